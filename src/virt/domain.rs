//! Domain XML: the template taken from a shut-off origin domain, and the XML of one
//! transient clone of it.
//!
//! A clone differs from its origin in exactly these ways:
//!
//! * name `atex-<run>-<suffix>`, no `<uuid>` (libvirt makes one);
//! * the primary disk (the first `device='disk'` with a driver type and a source) is a qcow2
//!   copy-on-write overlay whose backing file is the origin's image, `cache='unsafe'`; the
//!   origin's image is never written. Another writable disk would be shared by every clone,
//!   so such an origin is refused;
//! * `<os><nvram>` loses its path (each clone gets a fresh variable store from the template),
//!   `<tpm>` devices are removed, file-backed serial consoles become ptys (virtlogd refuses
//!   two domains writing one file);
//! * every `<interface>` is replaced by one NIC whose guest port 22 is forwarded to a host
//!   port: passt (`<backend type='passt'/>` with `<portForward>`) where libvirt accepts it,
//!   else QEMU user networking with `hostfwd` through `<qemu:commandline>`, on a fixed PCI
//!   slot that no other device of the origin uses;
//! * `<metadata>` gets an `<atex:instance>` element (namespace [`METADATA_NS`]) naming the
//!   run, the origin and the overlay volume, so that leftovers can be found
//!   ([`crate::virt::cleanup`]).

use std::collections::BTreeSet;

use xmltree::{Element, EmitterConfig, XMLNode};

/// Namespace of atex's `<metadata>` element in domains it creates.
pub const METADATA_NS: &str = "urn:atex:libvirt:1";
/// Namespace prefix of atex's metadata element.
pub const METADATA_PREFIX: &str = "atex";
/// Namespace of libvirt's QEMU command-line passthrough.
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// Prefix of every domain and volume name atex creates.
pub const NAME_PREFIX: &str = "atex-";

/// Errors of domain XML handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainXmlError {
    /// The XML does not parse.
    #[error("domain XML of {domain} does not parse: {message}")]
    Parse {
        /// Which domain.
        domain: String,
        /// The parser's message.
        message: String,
    },
    /// The XML parses but lacks something a clone needs, or has something it cannot handle.
    #[error("origin domain {domain}: {message}")]
    Unsupported {
        /// Which domain.
        domain: String,
        /// What is missing or wrong.
        message: String,
    },
}

/// Where the origin's primary disk lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A plain file (`<disk type='file'>`).
    File(String),
    /// A volume of a storage pool (`<disk type='volume'>`), resolved with `virsh vol-path`.
    Volume {
        /// Pool name.
        pool: String,
        /// Volume name.
        volume: String,
    },
}

/// How a clone's SSH port is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkBackend {
    /// libvirt's passt backend with `<portForward>` (libvirt ≥ 9.2 and passt installed).
    Passt,
    /// QEMU user networking (slirp) with `hostfwd`, through `<qemu:commandline>`.
    UserHostfwd,
}

/// What identifies a domain as atex's: its `<atex:instance>` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceMetadata {
    /// The run that created it.
    pub run: String,
    /// The origin domain it is a clone of.
    pub origin: String,
    /// Storage pool of its overlay volume.
    pub pool: String,
    /// Its overlay volume.
    pub volume: String,
    /// Host port forwarded to its port 22.
    pub port: u16,
}

/// Everything that differs between clones.
#[derive(Debug, Clone)]
pub struct CloneSpec {
    /// Domain name.
    pub name: String,
    /// Absolute path of the qcow2 overlay on the libvirt host.
    pub overlay: String,
    /// Path of the origin's image (the overlay's backing file).
    pub backing: String,
    /// Host address the SSH port is forwarded on.
    pub listen: String,
    /// Host port forwarded to the guest's port 22.
    pub port: u16,
    /// Networking.
    pub network: NetworkBackend,
    /// User networking only: `restrict=on` (the guest reaches nothing but forwarded ports).
    pub isolated: bool,
    /// User networking only: the QEMU NIC model (`e1000`, `virtio-net-pci`, …).
    pub nic_model: String,
    /// Metadata to record.
    pub metadata: InstanceMetadata,
}

/// The parsed XML of a shut-off origin domain, ready to be cloned.
#[derive(Debug, Clone)]
pub struct OriginTemplate {
    name: String,
    root: Element,
    disk_source: DiskSource,
    disk_format: String,
}

fn unsupported(domain: &str, message: impl Into<String>) -> DomainXmlError {
    DomainXmlError::Unsupported {
        domain: domain.to_string(),
        message: message.into(),
    }
}

fn child_elements_mut(e: &mut Element) -> impl Iterator<Item = &mut Element> {
    e.children.iter_mut().filter_map(XMLNode::as_mut_element)
}

fn child_elements(e: &Element) -> impl Iterator<Item = &Element> {
    e.children.iter().filter_map(XMLNode::as_element)
}

fn attr<'a>(e: &'a Element, name: &str) -> Option<&'a str> {
    e.attributes.get(name).map(String::as_str)
}

fn elem(name: &str, attrs: &[(&str, &str)]) -> Element {
    let mut e = Element::new(name);
    for (k, v) in attrs {
        e.attributes.insert((*k).to_string(), (*v).to_string());
    }
    e
}

fn with_children(mut e: Element, children: Vec<Element>) -> Element {
    e.children
        .extend(children.into_iter().map(XMLNode::Element));
    e
}

/// Parses one XML document into its root element.
pub(crate) fn parse(domain: &str, xml: &str) -> Result<Element, DomainXmlError> {
    Element::parse(xml.as_bytes()).map_err(|e| DomainXmlError::Parse {
        domain: domain.to_string(),
        message: e.to_string(),
    })
}

/// Serialises an element (no XML declaration, indented).
pub(crate) fn write(root: &Element) -> String {
    let mut out = Vec::new();
    let config = EmitterConfig::new()
        .perform_indent(true)
        .write_document_declaration(false);
    // Writing into a Vec cannot fail for I/O reasons; a malformed tree (an element name that
    // is not a name) cannot come out of the parser and the fixed names used here.
    if let Err(e) = root.write_with_config(&mut out, config) {
        tracing::error!(error = %e, "serialising domain XML failed");
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl OriginTemplate {
    /// Parses `virsh dumpxml --inactive ORIGIN` output of domain `name`.
    pub fn parse(name: &str, xml: &str) -> Result<Self, DomainXmlError> {
        let root = parse(name, xml)?;
        if root.name != "domain" {
            return Err(unsupported(
                name,
                format!("root element is <{}>, not <domain>", root.name),
            ));
        }
        let devices = root
            .get_child("devices")
            .ok_or_else(|| unsupported(name, "no <devices>"))?;
        let mut primary = None;
        for disk in child_elements(devices).filter(|e| e.name == "disk") {
            if attr(disk, "device").unwrap_or("disk") != "disk" {
                continue;
            }
            let format = disk
                .get_child("driver")
                .and_then(|d| attr(d, "type"))
                .map(str::to_string);
            let source = disk.get_child("source");
            let (Some(format), Some(source)) = (format, source) else {
                continue;
            };
            if primary.is_some() {
                if disk.get_child("readonly").is_none() {
                    return Err(unsupported(
                        name,
                        "it has more than one writable disk; clones would share every disk but the first",
                    ));
                }
                continue;
            }
            let src = match attr(disk, "type").unwrap_or("file") {
                "file" => DiskSource::File(
                    attr(source, "file")
                        .ok_or_else(|| unsupported(name, "its file disk has no source file"))?
                        .to_string(),
                ),
                "volume" => DiskSource::Volume {
                    pool: attr(source, "pool")
                        .ok_or_else(|| unsupported(name, "its volume disk names no pool"))?
                        .to_string(),
                    volume: attr(source, "volume")
                        .ok_or_else(|| unsupported(name, "its volume disk names no volume"))?
                        .to_string(),
                },
                other => {
                    return Err(unsupported(
                        name,
                        format!(
                            "its primary disk is of type '{other}'; only file and volume disks can be cloned"
                        ),
                    ));
                }
            };
            primary = Some((src, format));
        }
        let (disk_source, disk_format) =
            primary.ok_or_else(|| unsupported(name, "no disk with a driver type and a source"))?;
        Ok(Self {
            name: name.to_string(),
            root,
            disk_source,
            disk_format,
        })
    }

    /// The origin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the primary disk's image is.
    pub fn disk_source(&self) -> &DiskSource {
        &self.disk_source
    }

    /// The primary disk's format (`raw`, `qcow2`, …): the overlay's backing format.
    pub fn disk_format(&self) -> &str {
        &self.disk_format
    }

    /// The XML of one clone.
    pub fn clone_xml(&self, spec: &CloneSpec) -> String {
        let mut root = self.root.clone();
        root.children.retain(|n| {
            n.as_element()
                .is_none_or(|e| e.name != "uuid" && e.name != "name")
        });
        root.children
            .insert(0, XMLNode::Element(text_elem("name", &spec.name)));
        if let Some(os) = root.get_mut_child("os")
            && let Some(nvram) = os.get_mut_child("nvram")
        {
            nvram.children.clear();
        }
        let machine = root
            .get_child("os")
            .and_then(|os| os.get_child("type"))
            .and_then(|t| attr(t, "machine"))
            .unwrap_or("pc")
            .to_string();
        let mut used_slots = BTreeSet::new();
        if let Some(devices) = root.get_mut_child("devices") {
            let mut replaced = false;
            devices.children.retain(|n| {
                n.as_element()
                    .is_none_or(|e| e.name != "interface" && e.name != "tpm")
            });
            for dev in child_elements_mut(devices) {
                if dev.name == "disk" && !replaced && is_primary(dev) {
                    *dev = overlay_disk(dev, spec);
                    replaced = true;
                }
                if (dev.name == "serial" || dev.name == "console")
                    && attr(dev, "type") == Some("file")
                {
                    let target = dev.get_child("target").cloned();
                    *dev = elem(&dev.name.clone(), &[("type", "pty")]);
                    if let Some(t) = target {
                        dev.children.push(XMLNode::Element(t));
                    }
                }
            }
            collect_pci_slots(devices, &mut used_slots);
            if spec.network == NetworkBackend::Passt {
                devices
                    .children
                    .push(XMLNode::Element(passt_interface(spec)));
            }
        }
        if spec.network == NetworkBackend::UserHostfwd {
            let (bus, slot) = nic_address(&machine, &used_slots);
            add_qemu_commandline(&mut root, spec, &bus, slot);
        }
        set_metadata(&mut root, &spec.metadata);
        write(&root)
    }
}

fn text_elem(name: &str, text: &str) -> Element {
    let mut e = Element::new(name);
    e.children.push(XMLNode::Text(text.to_string()));
    e
}

fn is_primary(disk: &Element) -> bool {
    attr(disk, "device").unwrap_or("disk") == "disk"
        && disk
            .get_child("driver")
            .and_then(|d| attr(d, "type"))
            .is_some()
        && disk.get_child("source").is_some()
}

fn overlay_disk(orig: &Element, spec: &CloneSpec) -> Element {
    let mut disk = elem("disk", &[("type", "file"), ("device", "disk")]);
    let mut children = vec![
        elem(
            "driver",
            &[("name", "qemu"), ("type", "qcow2"), ("cache", "unsafe")],
        ),
        elem("source", &[("file", spec.overlay.as_str())]),
    ];
    for keep in ["target", "boot", "address", "serial"] {
        if let Some(c) = orig.get_child(keep) {
            children.push(c.clone());
        }
    }
    disk = with_children(disk, children);
    disk
}

fn passt_interface(spec: &CloneSpec) -> Element {
    let port = spec.port.to_string();
    let forward = with_children(
        elem(
            "portForward",
            &[("proto", "tcp"), ("address", spec.listen.as_str())],
        ),
        vec![elem("range", &[("start", port.as_str()), ("to", "22")])],
    );
    with_children(
        elem("interface", &[("type", "user")]),
        vec![
            elem("backend", &[("type", "passt")]),
            elem("model", &[("type", "virtio")]),
            forward,
        ],
    )
}

/// PCI slots of bus 0 that devices of the (inactive, so fully addressed) XML use.
fn collect_pci_slots(e: &Element, used: &mut BTreeSet<u8>) {
    for c in child_elements(e) {
        if c.name == "address"
            && attr(c, "type") == Some("pci")
            && attr(c, "bus").and_then(parse_hex) == Some(0)
            && let Some(slot) = attr(c, "slot").and_then(parse_hex)
        {
            used.insert(slot);
        }
        collect_pci_slots(c, used);
    }
}

fn parse_hex(s: &str) -> Option<u8> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The bus and the highest free slot for the user-networking NIC: a fixed address keeps
/// libvirt from handing the NIC's slot to another device.
fn nic_address(machine: &str, used: &BTreeSet<u8>) -> (String, u8) {
    let q35 = machine.contains("q35");
    let bus = if q35 { "pcie.0" } else { "pci.0" };
    // q35 has its LPC bridge at 0x1f; slots 0-2 hold host bridge, ISA and VGA on i440fx.
    let top = if q35 { 0x1e } else { 0x1f };
    let slot = (3..=top).rev().find(|s| !used.contains(s)).unwrap_or(top);
    (bus.to_string(), slot)
}

fn add_qemu_commandline(root: &mut Element, spec: &CloneSpec, bus: &str, slot: u8) {
    let mut netdev = format!(
        "user,id=atexnet0,hostfwd=tcp:{}:{}-:22",
        spec.listen, spec.port
    );
    if spec.isolated {
        netdev.push_str(",restrict=on");
    }
    let mut device = format!(
        "{},netdev=atexnet0,romfile=,bus={bus},addr={slot:#04x}",
        spec.nic_model
    );
    // User networking has no link to negotiate: QEMU's e1000 otherwise emulates the
    // negotiation, and the guest's driver sees the link only at its next watchdog run (up
    // to about 2.5 s after bringing the interface up, all of it before sshd is reachable).
    if spec.nic_model == "e1000" {
        device.push_str(",autonegotiation=off");
    }
    let mut ns = root
        .namespaces
        .clone()
        .unwrap_or_else(xmltree::Namespace::empty);
    ns.put("qemu", QEMU_NS);
    root.namespaces = Some(ns);
    let arg = |v: &str| {
        let mut a = elem("arg", &[("value", v)]);
        a.prefix = Some("qemu".into());
        a.namespace = Some(QEMU_NS.into());
        a
    };
    let existing = root
        .children
        .iter_mut()
        .filter_map(XMLNode::as_mut_element)
        .find(|e| e.name == "commandline" && e.namespace.as_deref() == Some(QEMU_NS));
    let args = [arg("-netdev"), arg(&netdev), arg("-device"), arg(&device)];
    match existing {
        Some(cl) => cl.children.extend(args.into_iter().map(XMLNode::Element)),
        None => {
            let mut cl = with_children(Element::new("commandline"), args.to_vec());
            cl.prefix = Some("qemu".into());
            cl.namespace = Some(QEMU_NS.into());
            root.children.push(XMLNode::Element(cl));
        }
    }
}

fn set_metadata(root: &mut Element, meta: &InstanceMetadata) {
    let port = meta.port.to_string();
    let mut inst = elem(
        "instance",
        &[
            ("run", meta.run.as_str()),
            ("origin", meta.origin.as_str()),
            ("pool", meta.pool.as_str()),
            ("volume", meta.volume.as_str()),
            ("port", port.as_str()),
        ],
    );
    inst.prefix = Some(METADATA_PREFIX.into());
    inst.namespace = Some(METADATA_NS.into());
    let mut ns = xmltree::Namespace::empty();
    ns.put(METADATA_PREFIX, METADATA_NS);
    inst.namespaces = Some(ns);
    if root.get_child("metadata").is_none() {
        root.children
            .push(XMLNode::Element(Element::new("metadata")));
    }
    if let Some(md) = root.get_mut_child("metadata") {
        md.children.retain(|n| {
            n.as_element()
                .is_none_or(|e| e.namespace.as_deref() != Some(METADATA_NS))
        });
        md.children.push(XMLNode::Element(inst));
    }
}

/// atex's metadata of a domain, from its XML (`virsh dumpxml`); `None` when the domain is
/// not atex's.
pub fn instance_metadata(
    domain: &str,
    xml: &str,
) -> Result<Option<InstanceMetadata>, DomainXmlError> {
    let root = parse(domain, xml)?;
    let Some(md) = root.get_child("metadata") else {
        return Ok(None);
    };
    let Some(inst) = child_elements(md)
        .find(|e| e.name == "instance" && e.namespace.as_deref() == Some(METADATA_NS))
    else {
        return Ok(None);
    };
    let get = |k: &str| attr(inst, k).unwrap_or_default().to_string();
    Ok(Some(InstanceMetadata {
        run: get("run"),
        origin: get("origin"),
        pool: get("pool"),
        volume: get("volume"),
        port: get("port").parse().unwrap_or(0),
    }))
}

/// The host port forwarded to port 22 in a domain's XML (passt `portForward` or a QEMU
/// `hostfwd` argument).
pub fn forwarded_ssh_port(domain: &str, xml: &str) -> Result<Option<u16>, DomainXmlError> {
    let root = parse(domain, xml)?;
    if let Some(devices) = root.get_child("devices") {
        for iface in child_elements(devices).filter(|e| e.name == "interface") {
            for pf in child_elements(iface).filter(|e| e.name == "portForward") {
                for range in child_elements(pf).filter(|e| e.name == "range") {
                    let to = attr(range, "to").unwrap_or("");
                    if (to == "22" || to.is_empty())
                        && let Some(p) = attr(range, "start").and_then(|s| s.parse().ok())
                    {
                        return Ok(Some(p));
                    }
                }
            }
        }
    }
    for cl in child_elements(&root).filter(|e| e.name == "commandline") {
        for arg in child_elements(cl) {
            let value = attr(arg, "value").unwrap_or("");
            for part in value.split(',') {
                if let Some(rule) = part.strip_prefix("hostfwd=tcp:")
                    && let Some((host, guest)) = rule.split_once('-')
                    && guest.trim_start_matches(':').ends_with("22")
                    && let Some(port) = host.rsplit(':').next().and_then(|p| p.parse().ok())
                {
                    return Ok(Some(port));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = r#"<domain type='qemu'>
  <name>origin</name>
  <uuid>0b1c7a7e-2f36-4a3e-9f0e-3c2c6a1d9e11</uuid>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/origin_VARS.fd</nvram>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/images/root.img'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/images/seed.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x0'/>
    </interface>
    <serial type='file'><source path='/var/log/origin.log'/><target port='0'/></serial>
    <tpm model='tpm-crb'><backend type='emulator'/></tpm>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1e' function='0x0'/>
    </memballoon>
  </devices>
</domain>"#;

    fn spec(network: NetworkBackend) -> CloneSpec {
        CloneSpec {
            name: "atex-r1-abc".into(),
            overlay: "/pool/atex-r1-abc.qcow2".into(),
            backing: "/images/root.img".into(),
            listen: "127.0.0.1".into(),
            port: 5123,
            network,
            isolated: true,
            nic_model: "e1000".into(),
            metadata: InstanceMetadata {
                run: "r1".into(),
                origin: "origin".into(),
                pool: "atex".into(),
                volume: "atex-r1-abc.qcow2".into(),
                port: 5123,
            },
        }
    }

    #[test]
    fn template_finds_the_primary_disk() {
        let t = OriginTemplate::parse("origin", ORIGIN).unwrap();
        assert_eq!(
            t.disk_source(),
            &DiskSource::File("/images/root.img".into())
        );
        assert_eq!(t.disk_format(), "raw");
    }

    #[test]
    fn clone_with_user_networking() {
        let t = OriginTemplate::parse("origin", ORIGIN).unwrap();
        let xml = t.clone_xml(&spec(NetworkBackend::UserHostfwd));
        let root = parse("clone", &xml).unwrap();
        assert_eq!(
            root.get_child("name").unwrap().get_text().unwrap(),
            "atex-r1-abc"
        );
        assert!(root.get_child("uuid").is_none());
        let nvram = root.get_child("os").unwrap().get_child("nvram").unwrap();
        assert!(nvram.get_text().is_none(), "{xml}");
        let devices = root.get_child("devices").unwrap();
        let disks: Vec<_> = child_elements(devices)
            .filter(|e| e.name == "disk")
            .collect();
        assert_eq!(
            attr(disks[0].get_child("source").unwrap(), "file"),
            Some("/pool/atex-r1-abc.qcow2")
        );
        assert_eq!(
            attr(disks[0].get_child("driver").unwrap(), "type"),
            Some("qcow2")
        );
        assert_eq!(
            attr(disks[0].get_child("target").unwrap(), "dev"),
            Some("vda")
        );
        assert_eq!(
            attr(disks[1].get_child("source").unwrap(), "file"),
            Some("/images/seed.iso")
        );
        assert!(child_elements(devices).all(|e| e.name != "interface" && e.name != "tpm"));
        let serial = devices.get_child("serial").unwrap();
        assert_eq!(attr(serial, "type"), Some("pty"));
        // 0x1f was the removed NIC's, 0x1e is the balloon's: the next free slot is 0x1f.
        assert!(
            xml.contains("hostfwd=tcp:127.0.0.1:5123-:22,restrict=on"),
            "{xml}"
        );
        assert!(
            xml.contains("e1000,netdev=atexnet0,romfile=,bus=pci.0,addr=0x1f,autonegotiation=off"),
            "{xml}"
        );
        // Another model gets no e1000 property.
        let mut virtio = spec(NetworkBackend::UserHostfwd);
        virtio.nic_model = "virtio-net-pci".into();
        let xml = t.clone_xml(&virtio);
        assert!(
            xml.contains("virtio-net-pci,netdev=atexnet0,romfile=,bus=pci.0,addr=0x1f\""),
            "{xml}"
        );
        let xml = t.clone_xml(&spec(NetworkBackend::UserHostfwd));
        assert!(xml.contains(&format!("xmlns:qemu=\"{QEMU_NS}\"")), "{xml}");
        assert_eq!(forwarded_ssh_port("clone", &xml).unwrap(), Some(5123));
        let meta = instance_metadata("clone", &xml).unwrap().unwrap();
        assert_eq!(meta, spec(NetworkBackend::UserHostfwd).metadata);
    }

    #[test]
    fn clone_with_passt() {
        let t = OriginTemplate::parse("origin", ORIGIN).unwrap();
        let xml = t.clone_xml(&spec(NetworkBackend::Passt));
        assert!(!xml.contains("qemu:commandline"), "{xml}");
        let root = parse("clone", &xml).unwrap();
        let iface = root
            .get_child("devices")
            .unwrap()
            .get_child("interface")
            .unwrap();
        assert_eq!(
            attr(iface.get_child("backend").unwrap(), "type"),
            Some("passt")
        );
        assert_eq!(forwarded_ssh_port("clone", &xml).unwrap(), Some(5123));
    }

    #[test]
    fn origins_that_cannot_be_cloned_are_refused() {
        let two = ORIGIN.replace(
            "<disk type='file' device='cdrom'>",
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/x'/><target dev='vdb'/></disk><disk type='file' device='cdrom'>",
        );
        let err = OriginTemplate::parse("origin", &two)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than one writable disk"), "{err}");
        let none = "<domain><name>x</name><devices/></domain>";
        let err = OriginTemplate::parse("x", none).unwrap_err().to_string();
        assert!(err.contains("no disk"), "{err}");
        let err = OriginTemplate::parse("x", "<domain")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not parse"), "{err}");
        let vol = ORIGIN.replace(
            "<disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='/images/root.img'/>",
            "<disk type='volume' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source pool='images' volume='f40.qcow2'/>",
        );
        let t = OriginTemplate::parse("origin", &vol).unwrap();
        assert_eq!(
            t.disk_source(),
            &DiskSource::Volume {
                pool: "images".into(),
                volume: "f40.qcow2".into()
            }
        );
    }

    #[test]
    fn foreign_domains_have_no_metadata() {
        assert_eq!(instance_metadata("origin", ORIGIN).unwrap(), None);
    }
}
