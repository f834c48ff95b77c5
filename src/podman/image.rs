//! Images without a registry: [`import_rootfs`] makes an image of a root filesystem (a
//! directory or a tarball) with `podman import`; [`build_with_deps`] derives an image with
//! extra packages from an existing one (`podman build`: the base's own package manager
//! installs them).

use std::path::Path;
use std::process::Stdio;

use super::cli::{Podman, PodmanError};
use crate::process::GroupChild;
use crate::scope::Scope;

/// Errors of image helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The root filesystem does not exist.
    #[error("root filesystem {0} does not exist")]
    NoRootfs(String),
    /// Packing the directory failed.
    #[error("packing {dir} with tar failed: {message}")]
    Tar {
        /// The directory.
        dir: String,
        /// tar's message.
        message: String,
    },
    /// A podman call failed.
    #[error("building image {tag}")]
    Podman {
        /// The image being built.
        tag: String,
        /// The cause (with podman's message).
        #[source]
        source: PodmanError,
    },
    /// No known package manager in the base image.
    #[error("image {0} has no dnf, yum, apt-get, apk or zypper to install packages with")]
    NoPackageManager(String),
    /// The base image does not exist (locally: nothing is pulled).
    #[error("base image {image} does not exist: {message}")]
    NoBase {
        /// The base image.
        image: String,
        /// podman's message.
        message: String,
    },
    /// Installing the packages (or building the image) failed.
    #[error("installing {packages} into image {base} failed")]
    Install {
        /// The base image.
        base: String,
        /// The packages, separated by spaces.
        packages: String,
        /// `podman build`'s failure, with its message (which holds the package manager's).
        #[source]
        source: PodmanError,
    },
    /// The build directory could not be prepared.
    #[error("preparing the image build: {0}")]
    Context(String),
    /// A package name that is not one.
    #[error("invalid package name {0:?}")]
    BadPackage(String),
}

/// What to set in an imported image (`podman import --change` instructions).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `--change` instructions (`CMD ["/bin/sh"]`, `ENV PATH=/usr/bin:/bin`, `STOPSIGNAL
    /// SIGRTMIN+3`).
    pub changes: Vec<String>,
}

/// Imports `rootfs` (a directory, or a tarball podman can read, compressed or not) as the
/// image `tag`; returns the image id.
pub async fn import_rootfs(
    podman: &Podman,
    rootfs: &Path,
    tag: &str,
    options: &ImportOptions,
    scope: &Scope,
) -> Result<String, ImageError> {
    let meta = std::fs::metadata(rootfs)
        .map_err(|_| ImageError::NoRootfs(rootfs.display().to_string()))?;
    let mut args: Vec<String> = vec!["import".into(), "--quiet".into()];
    for c in &options.changes {
        args.push("--change".into());
        args.push(c.clone());
    }
    let podman_err = |source| ImageError::Podman {
        tag: tag.to_string(),
        source,
    };
    if !meta.is_dir() {
        args.push("--".into());
        args.push(rootfs.display().to_string());
        args.push(tag.into());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = podman.run(&a, scope).await.map_err(podman_err)?;
        return Ok(out.trim().to_string());
    }
    // tar -c DIR | podman import - TAG
    let mut tar = tokio::process::Command::new("tar");
    tar.arg("--numeric-owner")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "-f", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tar = GroupChild::spawn(tar, scope).map_err(|e| ImageError::Tar {
        dir: rootfs.display().to_string(),
        message: e.to_string(),
    })?;
    let Some(stream) = tar.take_stdout() else {
        return Err(ImageError::Tar {
            dir: rootfs.display().to_string(),
            message: "no output pipe".into(),
        });
    };
    let mut tar_err = tar.take_stderr();
    let stream: Stdio = stream
        .try_into()
        .map_err(|e: std::io::Error| ImageError::Tar {
            dir: rootfs.display().to_string(),
            message: e.to_string(),
        })?;
    args.push("-".into());
    args.push(tag.into());
    let mut cmd = podman.command(&args);
    cmd.stdin(stream)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = GroupChild::spawn(cmd, scope).map_err(|e| {
        podman_err(PodmanError::Spawn {
            program: podman.program().display().to_string(),
            source: e.cause,
        })
    })?;
    let command = args.join(" ");
    let (imported, tar_status) = tokio::join!(collect(child), async {
        use tokio::io::AsyncReadExt;
        let mut msg = Vec::new();
        if let Some(r) = tar_err.as_mut() {
            let _ = r.read_to_end(&mut msg).await;
        }
        (tar.wait().await, msg)
    });
    let (tar_info, tar_msg) = tar_status;
    match tar_info {
        Ok(info) if info.status.success() => {}
        other => {
            return Err(ImageError::Tar {
                dir: rootfs.display().to_string(),
                message: match other {
                    Ok(info) => format!(
                        "{}: {}",
                        info.status,
                        String::from_utf8_lossy(&tar_msg).trim()
                    ),
                    Err(e) => e.to_string(),
                },
            });
        }
    }
    let (status, out, err) = imported.map_err(|source| {
        podman_err(PodmanError::Io {
            command: command.clone(),
            source,
        })
    })?;
    if !status.success() {
        return Err(podman_err(PodmanError::Failed {
            command,
            status,
            message: err.trim().to_string(),
        }));
    }
    Ok(out.trim().to_string())
}

async fn collect(
    mut child: GroupChild,
) -> std::io::Result<(crate::process::ExitStatus, String, String)> {
    use tokio::io::AsyncReadExt;
    let mut out = child.take_stdout();
    let mut err = child.take_stderr();
    let (o, e) = tokio::join!(
        async {
            let mut b = Vec::new();
            if let Some(r) = out.as_mut() {
                r.read_to_end(&mut b).await?;
            }
            Ok::<_, std::io::Error>(b)
        },
        async {
            let mut b = Vec::new();
            if let Some(r) = err.as_mut() {
                r.read_to_end(&mut b).await?;
            }
            Ok::<_, std::io::Error>(b)
        }
    );
    let info = child.wait().await?;
    Ok((
        info.status,
        String::from_utf8_lossy(&o?).into_owned(),
        String::from_utf8_lossy(&e?).into_owned(),
    ))
}

/// What the install script prints (and exits 99 with) when the image has no package
/// manager it knows (not literally in the script: podman's message quotes the script).
const NO_PACKAGE_MANAGER: &str = "atex: no dnf, yum, apt-get, apk or zypper in the image";

/// The shell script that installs `packages` with whatever package manager the image has
/// (dnf, yum, apt-get, apk, zypper; `apt-get update` first, caches cleaned afterwards).
/// Names that are not package names (empty, starting with `-`, shell characters) are
/// refused.
pub fn install_script(packages: &[String]) -> Result<String, ImageError> {
    for p in packages {
        let ok = !p.is_empty()
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-._:@/=~*".contains(&b));
        if !ok {
            return Err(ImageError::BadPackage(p.clone()));
        }
    }
    let list = packages
        .iter()
        .map(|p| crate::connection::shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(format!(
        "set -e
if command -v dnf >/dev/null 2>&1; then dnf -y -q --setopt=install_weak_deps=False install {list}; dnf clean all
elif command -v yum >/dev/null 2>&1; then yum -y -q install {list}; yum clean all
elif command -v apt-get >/dev/null 2>&1; then export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends {list}; apt-get clean; rm -rf /var/lib/apt/lists/*
elif command -v apk >/dev/null 2>&1; then apk add --no-cache {list}
elif command -v zypper >/dev/null 2>&1; then zypper -n install --no-recommends {list}; zypper clean -a
else m=dnf; echo \"atex: no $m, yum, apt-get, apk or zypper in the image\" >&2; exit 99
fi"
    ))
}

/// How [`build_with_deps`] builds.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `podman build --network MODE` for the container that installs the packages
    /// (`host`: this machine's network, which needs no NAT; `None`: podman's default).
    pub network: Option<String>,
}

/// The id of the local image `image`; [`ImageError::NoBase`] when there is none.
async fn image_id(podman: &Podman, image: &str, scope: &Scope) -> Result<String, ImageError> {
    match podman
        .run(
            &["image", "inspect", "--format", "{{.Id}}", "--", image],
            scope,
        )
        .await
    {
        Ok(out) => match out.lines().next().map(str::trim) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(ImageError::NoBase {
                image: image.to_string(),
                message: format!("podman image inspect printed {out:?}"),
            }),
        },
        Err(e) if e.is_not_found() => Err(ImageError::NoBase {
            image: image.to_string(),
            message: e.message().unwrap_or_default().to_string(),
        }),
        Err(source) => Err(ImageError::Podman {
            tag: image.to_string(),
            source,
        }),
    }
}

/// Derives the image `tag` from the local image `base` with `packages` installed, with
/// `podman build` (`FROM base`, one `RUN` of [`install_script`]: the base's own package
/// manager installs them, from the repositories configured in the base); returns the new
/// image's id. The base's `CMD`, `ENTRYPOINT`, `ENV` and `STOPSIGNAL` are kept, and no
/// label of atex is added (containers of the new image are not atex's). With no packages,
/// `tag` becomes another name of `base`. podman removes its build container also when the
/// build fails; cancelling `scope` kills `podman build` (a build killed with SIGKILL can
/// leave a build container, `podman ps --external`).
///
/// Errors name the base (and the packages) and carry the tool's message: a base that does
/// not exist ([`ImageError::NoBase`]), a base without a package manager
/// ([`ImageError::NoPackageManager`]), a failed install or build ([`ImageError::Install`],
/// with apt's, dnf's, … or podman's own message).
pub async fn build_with_deps(
    podman: &Podman,
    base: &str,
    packages: &[String],
    tag: &str,
    options: &BuildOptions,
    scope: &Scope,
) -> Result<String, ImageError> {
    let script = install_script(packages)?;
    let podman_err = |source| ImageError::Podman {
        tag: tag.to_string(),
        source,
    };
    let base_id = image_id(podman, base, scope).await?;
    if packages.is_empty() {
        podman
            .run(&["tag", &base_id, tag], scope)
            .await
            .map_err(podman_err)?;
        return Ok(base_id);
    }
    let dir = tempfile::Builder::new()
        .prefix("atex-build-")
        .tempdir()
        .map_err(|e| ImageError::Context(e.to_string()))?;
    let run = serde_json::to_string(&["/bin/sh", "-c", script.as_str()])
        .map_err(|e| ImageError::Context(e.to_string()))?;
    let containerfile = dir.path().join("Containerfile");
    std::fs::write(&containerfile, format!("FROM {base_id}\nRUN {run}\n"))
        .map_err(|e| ImageError::Context(e.to_string()))?;
    let context = dir.path().join("context");
    std::fs::create_dir(&context).map_err(|e| ImageError::Context(e.to_string()))?;
    let iidfile = dir.path().join("iid");
    let (containerfile, context, iidfile) = (
        containerfile.display().to_string(),
        context.display().to_string(),
        iidfile.display().to_string(),
    );
    let network = options.network.as_ref().map(|n| format!("--network={n}"));
    let mut args: Vec<&str> = vec![
        "build",
        "--quiet",
        "--pull=never",
        "--force-rm",
        "--file",
        &containerfile,
        "--iidfile",
        &iidfile,
        "--tag",
        tag,
    ];
    if let Some(n) = &network {
        args.push(n);
    }
    args.push("--");
    args.push(&context);
    if let Err(source) = podman.run(&args, scope).await {
        if source
            .message()
            .is_some_and(|m| m.contains(NO_PACKAGE_MANAGER))
        {
            return Err(ImageError::NoPackageManager(base.to_string()));
        }
        return Err(ImageError::Install {
            base: base.to_string(),
            packages: packages.join(" "),
            source,
        });
    }
    let id = std::fs::read_to_string(&iidfile).map_err(|e| ImageError::Context(e.to_string()))?;
    Ok(id.trim().trim_start_matches("sha256:").to_string())
}

/// Removes an image (failures other than "not known" are returned).
pub async fn remove_image(podman: &Podman, image: &str, scope: &Scope) -> Result<(), PodmanError> {
    match podman.run(&["image", "rm", "-f", "--", image], scope).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn install_script_quotes_and_refuses() {
        let s = install_script(&["bash".into(), "python3-dev".into()]).unwrap();
        assert!(!s.contains(NO_PACKAGE_MANAGER));
        assert!(s.contains("apt-get install -y -qq --no-install-recommends bash python3-dev"));
        assert!(install_script(&["-oops".into()]).is_err());
        assert!(install_script(&["a;b".into()]).is_err());
    }
}
