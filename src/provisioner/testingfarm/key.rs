//! The SSH key a reservation installs on its guest: a given key pair, or a fresh ed25519
//! pair in a private temporary directory; and the `authorized_keys` secret carrying it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, PrivateKey};

/// The secret the reserve test decodes into root's `authorized_keys`.
pub const AUTHORIZED_KEYS_SECRET: &str = "TF_RESERVATION_AUTHORIZED_KEYS_BASE64";

/// A key pair could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file of the key pair could not be read or written.
    #[error("SSH key {}: cannot {op}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The public key file does not hold an OpenSSH public key line.
    #[error("SSH key {}: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')", path.display())]
    BadPublicKey {
        /// The `.pub` file.
        path: PathBuf,
    },
    /// A fresh key pair could not be encoded.
    #[error("cannot encode a generated SSH key: {0}")]
    Encode(String),
}

/// The private key used to log in to guests and the public key line sent to them.
#[derive(Debug)]
pub struct GuestKey {
    private: PathBuf,
    /// `TYPE BASE64 foo@bar` (the comment replaced so that no user or host name leaks).
    public_line: String,
    /// Holds a generated pair; removed with it.
    _dir: Option<tempfile::TempDir>,
}

impl GuestKey {
    /// The pair at `private` and `private.pub`.
    pub fn from_files(private: &Path) -> Result<Self, KeyError> {
        let pub_path = PathBuf::from(format!("{}.pub", private.display()));
        let io = |path: &Path, op| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, op, source }
        };
        std::fs::metadata(private).map_err(io(private, "read"))?;
        let text = std::fs::read_to_string(&pub_path).map_err(io(&pub_path, "read"))?;
        let public_line = public_line(&text).ok_or(KeyError::BadPublicKey { path: pub_path })?;
        Ok(Self {
            private: private.to_path_buf(),
            public_line,
            _dir: None,
        })
    }

    /// A fresh ed25519 pair in a private temporary directory (removed on drop).
    pub fn generate() -> Result<Self, KeyError> {
        let dir = tempfile::Builder::new()
            .prefix("atex-tf-key-")
            .tempdir()
            .map_err(|source| KeyError::Io {
                path: std::env::temp_dir(),
                op: "create a temporary directory",
                source,
            })?;
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|source| KeyError::Io {
                path: "/dev/urandom".into(),
                op: "read",
                source,
            })?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment("foo@bar");
        let private_text = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let public_text = key
            .public_key()
            .to_openssh()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let private = dir.path().join("id_ed25519");
        write_private(&private, private_text.as_bytes()).map_err(|source| KeyError::Io {
            path: private.clone(),
            op: "write",
            source,
        })?;
        let public_line =
            public_line(&public_text).ok_or_else(|| KeyError::Encode(public_text.clone()))?;
        std::fs::write(private.with_extension("pub"), format!("{public_line}\n")).map_err(
            |source| KeyError::Io {
                path: private.with_extension("pub"),
                op: "write",
                source,
            },
        )?;
        Ok(Self {
            private,
            public_line,
            _dir: Some(dir),
        })
    }

    /// The private key file.
    pub fn private_path(&self) -> &Path {
        &self.private
    }

    /// The public key line sent to guests.
    pub fn public_line(&self) -> &str {
        &self.public_line
    }

    /// The value of [`AUTHORIZED_KEYS_SECRET`]: base64 of the public key line and a newline.
    pub fn secret(&self) -> String {
        base64(format!("{}\n", self.public_line).as_bytes())
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// `TYPE BASE64 foo@bar` from the first line of a public key file.
fn public_line(text: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut fields = line.split_whitespace();
    let (kind, data) = (fields.next()?, fields.next()?);
    let kind_ok = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p))
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-@.".contains(&b));
    let data_ok = data.len() >= 8
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    (kind_ok && data_ok).then(|| format!("{kind} {data} foo@bar"))
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn generated_key_is_private_and_hides_the_comment() {
        let key = GuestKey::generate().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(key.private_path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(key.public_line().starts_with("ssh-ed25519 "));
        assert!(key.public_line().ends_with(" foo@bar"));
        let dir = key.private_path().parent().unwrap().to_path_buf();
        drop(key);
        assert!(!dir.exists());
    }

    #[test]
    fn given_key_replaces_the_comment_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, "private").unwrap();
        std::fs::write(
            dir.path().join("k.pub"),
            "ssh-ed25519 AAAAC3Nz+/= jdoe@laptop.example\n",
        )
        .unwrap();
        let key = GuestKey::from_files(&k).unwrap();
        assert_eq!(key.public_line(), "ssh-ed25519 AAAAC3Nz+/= foo@bar");
        assert_eq!(
            key.secret(),
            base64(b"ssh-ed25519 AAAAC3Nz+/= foo@bar\n").as_str()
        );
        std::fs::write(dir.path().join("k.pub"), "not a key; rm -rf\n").unwrap();
        let e = GuestKey::from_files(&k).unwrap_err();
        assert!(e.to_string().contains("not an OpenSSH public key"), "{e}");
        let e = GuestKey::from_files(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
