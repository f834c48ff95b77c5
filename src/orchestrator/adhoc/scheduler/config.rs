//! [`Config`]: everything fixed for one run.

use std::path::PathBuf;
use std::sync::Arc;

use super::super::policy::Policies;
use super::super::setup_hook::SetupHook;
use crate::aggregator::Aggregator;
use crate::executor::ExecutorFactory;
use crate::orchestrator::events::EventSender;
use crate::provisioner::Provisioner;

/// Everything fixed for one run.
pub(crate) struct Config {
    pub(crate) platform: Arc<str>,
    pub(crate) provisioners: Vec<Arc<dyn Provisioner>>,
    pub(crate) factory: Arc<dyn ExecutorFactory>,
    pub(crate) aggregator: Arc<dyn Aggregator>,
    pub(crate) old_aggregator: Option<Arc<dyn Aggregator>>,
    pub(crate) policies: Policies,
    pub(crate) max_spares: usize,
    pub(crate) max_failed_setups: usize,
    pub(crate) max_remotes: Option<usize>,
    pub(crate) artifacts_dir: Option<PathBuf>,
    pub(crate) events: EventSender,
    /// Run on each remote after its executor started, in order.
    pub(crate) setup_hooks: Arc<[Arc<dyn SetupHook>]>,
}
