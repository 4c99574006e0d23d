//! The signing key file and the signature itself.
//!
//! # Key file
//!
//! Text, one key per line: `<key id> <64 hex digits>` (a 32-byte key). Blank lines and lines
//! starting with `#` are ignored. A key id is 1 to 64 of `A-Z a-z 0-9 _ -`. The **last** key is
//! the one new signatures use; earlier ones are still accepted by the database as long as they
//! are in its key table (rotation: add a key, SIGHUP, then remove the old one). The file must
//! be a regular file readable by its owner only (no group or other permission bits, e.g. 0600):
//! anyone who reads it can sign any tenant. `tenantgate signing install` creates it.
//!
//! # Signature
//!
//! `<key id>:<lowercase hex HMAC-SHA-256(key, message)>`, where the message is the UTF-8 text
//! `tenantgate-v1 \n <key id> \n <backend pid, decimal> \n <tenant>` (no spaces; `\n` a line
//! feed). Neither a key id nor a pid can contain a line feed and the tenant comes last, so
//! the encoding is unambiguous; the version prefix keeps these MACs apart from any other use
//! of the key. `tenantgate.current_tenant()` computes exactly this in SQL
//! ([`super::sql`]) with the pads stored next to the key ([`SigningKey::pads`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// SHA-256's block size: HMAC pads the key to it.
const BLOCK: usize = 64;

/// The version prefix of every signed message.
pub const MESSAGE_PREFIX: &str = "tenantgate-v1";

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read (missing, permissions, not a file).
    #[error("{path}: {reason}")]
    Read {
        /// As given (`[tenant] signing_key_file` or `--key-file`).
        path: PathBuf,
        /// The OS error, or `not a regular file`.
        reason: String,
    },
    /// Group or others may access it.
    #[error("{path}: permissions {mode:04o} are too open: the signing key must be readable by its owner only (chmod 600)")]
    Mode {
        /// As given (`[tenant] signing_key_file` or `--key-file`).
        path: PathBuf,
        /// Its permission bits (`& 0o7777`), shown in octal.
        mode: u32,
    },
    /// A line is not `<key id> <64 hex digits>`, or repeats a key id.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// No key at all.
    #[error("no key in the file (expected lines `<key id> <64 hex digits>`)")]
    Empty,
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// As given (`[tenant] signing_key_file` or `--key-file`).
        path: PathBuf,
        /// In the message and as `source()` (`cli::render_error` prints it once).
        source: std::io::Error,
    },
}

/// One key: an id and 32 secret bytes. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The id carried in every signature, so the database knows which key to check with.
    id: String,
    secret: [u8; KEY_LEN],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Whether `id` is a valid key id (it also appears in SQL literals and in the signature,
/// before the `:`).
pub fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl SigningKey {
    /// A key from its parts (`id` must pass [`valid_key_id`]).
    pub fn new(id: &str, secret: [u8; KEY_LEN]) -> Option<SigningKey> {
        valid_key_id(id).then(|| SigningKey {
            id: id.to_owned(),
            secret,
        })
    }

    /// A key of random bytes from the thread-local CSPRNG; None when `id` is not a valid key id.
    pub fn generate(id: &str) -> Option<SigningKey> {
        SigningKey::new(id, rand::random::<[u8; KEY_LEN]>())
    }

    /// Also in every signature, before the `:`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret bytes (for the key table and the key file only).
    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// HMAC's inner and outer padded keys (`key ⊕ 0x36…`, `key ⊕ 0x5c…`), stored in the key
    /// table so that the database computes the HMAC with two `sha256()` calls and no XOR.
    pub fn pads(&self) -> ([u8; BLOCK], [u8; BLOCK]) {
        pads(&self.secret)
    }

    /// The signature of `tenant` on the backend with process id `pid`.
    pub fn sign(&self, tenant: &str, pid: i32) -> String {
        let mac = hmac_sha256(&self.secret, &message(&self.id, pid, tenant));
        format!("{}:{}", self.id, hex(&mac))
    }
}

/// The signed message (see the module documentation).
pub fn message(key_id: &str, pid: i32, tenant: &str) -> Vec<u8> {
    format!("{MESSAGE_PREFIX}\n{key_id}\n{pid}\n{tenant}").into_bytes()
}

/// `key` padded to a block and XOR-ed with 0x36 (inner) and 0x5c (outer), as RFC 2104 says;
/// a key longer than a block is hashed first.
fn pads(key: &[u8]) -> ([u8; BLOCK], [u8; BLOCK]) {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0u8; BLOCK];
    let mut opad = [0u8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    (ipad, opad)
}

/// HMAC-SHA-256 (RFC 2104): `sha256(opad || sha256(ipad || msg))`, the same expression the SQL
/// function evaluates when pgcrypto is not installed.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let (ipad, opad) = pads(key);
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Lowercase hex, as PostgreSQL's `encode(…, 'hex')` writes it.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    s.as_bytes()
        .chunks(2)
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

/// The keys of one key file, in file order; the last signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    /// Never empty.
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Reads and parses `path`, refusing a file that group or others can access.
    pub fn load(path: &Path) -> Result<KeyRing, KeyFileError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |reason: String| KeyFileError::Read {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| read(io_reason(&e)))?;
        if !meta.is_file() {
            return Err(read("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Mode {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| read(io_reason(&e)))?;
        KeyRing::parse(&text)
    }

    /// Parses key file text (strictly: any malformed line refuses the whole file).
    pub fn parse(text: &str) -> Result<KeyRing, KeyFileError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| KeyFileError::Line {
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, key] = fields.as_slice() else {
                return Err(bad(format!(
                    "expected `<key id> <64 hex digits>`, found {} fields",
                    fields.len()
                )));
            };
            if !valid_key_id(id) {
                return Err(bad(format!(
                    "key id \"{id}\" must be 1 to 64 of A-Z a-z 0-9 _ -"
                )));
            }
            let secret: [u8; KEY_LEN] = unhex(key)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(format!("key {id}: expected 64 hex digits (32 bytes)")))?;
            if keys.iter().any(|k| k.id == *id) {
                return Err(bad(format!("key id {id} appears twice")));
            }
            keys.push(SigningKey {
                id: (*id).to_owned(),
                secret,
            });
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// A ring of one key.
    pub fn single(key: SigningKey) -> KeyRing {
        KeyRing { keys: vec![key] }
    }

    /// The key new signatures use (the file's last).
    pub fn current(&self) -> &SigningKey {
        // `keys` is never empty (parse and single guarantee it).
        &self.keys[self.keys.len() - 1]
    }

    /// Every key, in file order.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Appends `key`, which then signs; refuses an id already present.
    pub fn push(&mut self, key: SigningKey) -> Result<(), String> {
        if self.get(&key.id).is_some() {
            return Err(format!("key id {} is already in the key file", key.id));
        }
        self.keys.push(key);
        Ok(())
    }

    /// Removes the key `id`; refuses to remove the signing (last) key.
    pub fn remove(&mut self, id: &str) -> Result<(), String> {
        let Some(i) = self.keys.iter().position(|k| k.id == id) else {
            return Err(format!("no key {id} in the key file"));
        };
        if i == self.keys.len() - 1 {
            return Err(format!(
                "key {id} is the one the proxy signs with (the file's last); add a new key first (`tenantgate signing install --add-key`) and reload the proxies (SIGHUP)"
            ));
        }
        self.keys.remove(i);
        Ok(())
    }

    /// The file text, with a header comment that states the format and the 0600 rule.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# tenantgate signing keys: `<key id> <64 hex digits>` per line; the last line signs.\n\
             # Keep this file mode 0600: whoever reads it can sign any tenant.\n",
        );
        for k in &self.keys {
            s.push_str(&format!("{} {}\n", k.id, hex(&k.secret)));
        }
        s
    }

    /// Writes the ring to `path` with mode 0600, atomically (a temporary file in the same
    /// directory, renamed over it), so a proxy reloading meanwhile reads the old or the new
    /// file, never half of one.
    pub fn write(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keys".into());
        let tmp = path.with_file_name(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        let written = f
            .write_all(self.render().as_bytes())
            .and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(())
    }
}

/// A key id none of `taken` has: `k<UTC yyyymmddhhmmss>`, with `-2`, `-3` … when taken.
pub fn fresh_key_id(taken: &[SigningKey]) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = now.chars().filter(char::is_ascii_digit).collect();
    let base = format!("k{digits}");
    let mut id = base.clone();
    let mut n = 2;
    while taken.iter().any(|k| k.id == id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 2 of RFC 4231.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_binds_key_pid_and_tenant() {
        let k = SigningKey::new("k1", [7; KEY_LEN]).expect("valid id");
        let s = k.sign("t", 42);
        assert!(s.starts_with("k1:") && s.len() == 3 + 64, "{s}");
        assert_ne!(s, k.sign("t", 43));
        assert_ne!(s, k.sign("u", 42));
        let other = SigningKey::new("k2", [7; KEY_LEN]).expect("valid id");
        assert_ne!(s[3..], other.sign("t", 42)[3..]);
        // The documented message, byte for byte.
        assert_eq!(message("k1", 42, "t"), b"tenantgate-v1\nk1\n42\nt".to_vec());
        // What the SQL computes from the stored pads.
        let (ipad, opad) = k.pads();
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update(message("k1", 42, "t"))
            .finalize();
        let outer = Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize();
        assert_eq!(format!("k1:{}", hex(&outer)), s);
    }

    #[test]
    fn key_files_parse_strictly() {
        let a = "a".repeat(64);
        let ring = KeyRing::parse(&format!("# c\n\nold {a}\nnew {}\n", "b".repeat(64)))
            .expect("valid file");
        assert_eq!(ring.current().id(), "new");
        assert_eq!(ring.keys().len(), 2);
        for (text, needle) in [
            ("".to_owned(), "no key"),
            (format!("k {}", "a".repeat(63)), "64 hex"),
            (format!("k {}", "g".repeat(64)), "64 hex"),
            (format!("k {a} extra"), "3 fields"),
            (format!("k:1 {a}"), "key id"),
            (format!("k {a}\nk {a}"), "twice"),
        ] {
            let e = KeyRing::parse(&text).expect_err(&text).to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert_eq!(
            KeyRing::parse(&ring.render()).expect("round trip"),
            ring,
            "render/parse round trip"
        );
    }

    #[test]
    fn rotation_keeps_the_signing_key() {
        let mut ring = KeyRing::single(SigningKey::generate("k1").expect("id"));
        let id = fresh_key_id(ring.keys());
        ring.push(SigningKey::generate(&id).expect("id"))
            .expect("new id");
        assert_eq!(ring.current().id(), id);
        assert!(ring.push(SigningKey::generate(&id).expect("id")).is_err());
        assert!(ring.remove(&id).is_err(), "the signing key stays");
        ring.remove("k1").expect("old key goes");
        assert_eq!(ring.keys().len(), 1);
        assert_ne!(fresh_key_id(ring.keys()), id);
    }

    #[test]
    fn files_open_to_others_are_refused_and_written_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tg-keys-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("keys");
        let ring = KeyRing::single(SigningKey::generate("k1").expect("id"));
        ring.write(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(KeyRing::load(&path).expect("load"), ring);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = KeyRing::load(&path).expect_err("0640").to_string();
        assert!(e.contains("0640") && e.contains("chmod 600"), "{e}");
        let e = KeyRing::load(&dir.join("missing")).expect_err("missing");
        assert!(e.to_string().contains("no such file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
