//! Bundle signatures: the statement that names a bundle, SSHSIG signatures over it (a key file or an ssh-agent),
//! and their check against an allowed-signers file, as `ssh-keygen -Y sign/verify` make and check them.
//!
//! The signed message (the **statement**) is a small text document:
//!
//! ```text
//! barge-bundle-signature v1
//! catalogDigest sha256:…
//! formatVersion N
//! artifact REF DIGEST      (one line per artifact, in catalog order)
//! ```
//!
//! It is signed in the SSHSIG format under the namespace `barge-bundle` and
//! written beside the bundle as `NAME.sig` (armored), with the statement
//! itself as `NAME.sig.msg` so that `ssh-keygen -Y verify` can check it with
//! no barge at hand. barge never trusts `NAME.sig.msg`: it rebuilds the
//! statement from the bundle it reads (its catalog, and the sha256 of its bytes).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use barge_bundle::{Algorithm, Catalog, Digest};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::io::copy_exact;
use crate::store::{BlobStore, Expect, Location, StoreOptions};
use crate::{Reporter, Result, TransferError};

/// The SSHSIG namespace of bundle signatures.
pub const NAMESPACE: &str = "barge-bundle";
/// `NAME.sig`: the armored signature beside the bundle.
pub const SIG_SUFFIX: &str = ".sig";
/// `NAME.sig.msg`: the signed statement beside the bundle, for `ssh-keygen -Y verify`.
pub const MSG_SUFFIX: &str = ".sig.msg";
/// A signature or statement larger than this is not one barge wrote.
const MAX_SIDE_FILE: u64 = 1 << 20;

/// The statement a signature covers, for this catalog and catalogDigest.
pub fn statement(catalog: &Catalog, digest: &Digest) -> String {
    let mut s =
        format!("barge-bundle-signature v1\ncatalogDigest {digest}\nformatVersion {}\n", catalog.format_version);
    for a in &catalog.artifacts {
        s += &format!("artifact {} {}\n", a.ref_name(), a.digest);
    }
    s
}

/// The statement of the bundle in `store`: its catalog read from its head, its bytes
/// hashed (unless the caller already knows the catalogDigest).
pub async fn statement_of(store: &dyn BlobStore, digest: Option<Digest>, reporter: &dyn Reporter) -> Result<String> {
    let what = store.display();
    let inspected = crate::inspect(store).await?;
    let catalog = Catalog::parse(&inspected.catalog_json)?;
    let digest = match digest {
        Some(d) => d,
        None => {
            let info = store.info().await?.ok_or_else(|| TransferError::NotFound(format!("bundle {what}")))?;
            reporter.start("hashing the bundle", Some(info.size));
            let mut whole = store.read_range(0, info.size, &info.etag).await?;
            let sink = &mut tokio::io::sink();
            let d = copy_exact(&mut whole, sink, info.size, Algorithm::Sha256, &what, reporter).await?;
            reporter.finish();
            d
        }
    };
    Ok(statement(&catalog, &digest))
}

/// Where a file beside the bundle lives: `NAME` + `suffix`, in the same directory or container.
pub fn beside(location: &Location, suffix: &str) -> Result<Location> {
    match location {
        Location::Local(p) => {
            let mut s = p.clone().into_os_string();
            s.push(suffix);
            Ok(Location::Local(PathBuf::from(s)))
        }
        Location::Azure(u) => Ok(Location::Azure(u.sibling(&format!("{}{suffix}", u.blob())))),
        // A split bundle's signature is named after the bundle, beside its parts.json.
        Location::Parts { json, part: None } => {
            let stem = |s: &str| s.strip_suffix(crate::store::parts::PARTS_JSON).map(|st| format!("{st}{suffix}"));
            match json.as_ref() {
                Location::Local(p) => stem(&p.to_string_lossy()).map(|s| Location::Local(PathBuf::from(s))),
                Location::Azure(u) => stem(u.blob()).map(|s| Location::Azure(u.sibling(&s))),
                _ => None,
            }
            .ok_or(TransferError::Internal("a split bundle is named by its parts.json"))
        }
        // Standard input (and any location that is not one file or blob) has nothing beside it.
        _ => Err(TransferError::InvalidLocation(
            "only a bundle that is one file or blob has a signature beside it; name the bundle's file or URL".into(),
        )),
    }
}

/// The small text file at `location`, or `None` when there is none.
pub async fn read_side_file(location: &Location, opts: &StoreOptions) -> Result<Option<String>> {
    read_text(location.open(opts)?.as_ref()).await
}

/// The small text blob in `store`, or `None` when there is none.
pub async fn read_text(store: &dyn BlobStore) -> Result<Option<String>> {
    let Some(info) = store.info().await? else { return Ok(None) };
    let what = store.display();
    if info.size > MAX_SIDE_FILE {
        return Err(TransferError::InvalidLocation(format!(
            "{what} is {} bytes, too large for a signature",
            info.size
        )));
    }
    let mut stream = store.read_range(0, info.size, &info.etag).await?;
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes)
        .await
        .map_err(|e| TransferError::io(format!("reading {what}"), e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| TransferError::InvalidLocation(format!("{what} is not text, so not a signature")))?;
    Ok(Some(text))
}

/// Write a small text file at `location`, replacing what is there.
pub async fn write_side_file(location: &Location, opts: &StoreOptions, text: &str) -> Result<()> {
    write_text(location.open(opts)?.as_ref(), text).await
}

/// Write a small text blob into `store`, replacing what is there.
pub async fn write_text(store: &dyn BlobStore, text: &str) -> Result<()> {
    let mut sink = store.create(true, text.len() as u64).await?;
    let what = store.display();
    tokio::io::AsyncWriteExt::write_all(&mut sink, text.as_bytes())
        .await
        .map_err(|e| TransferError::io(format!("writing {what}"), e))?;
    tokio::io::AsyncWriteExt::flush(&mut sink).await.map_err(|e| TransferError::io(format!("writing {what}"), e))?;
    let expect = Expect { size: text.len() as u64, sha256: None, metadata: Vec::new(), md5: None };
    sink.commit(expect).await
}

/// Is this blob name a signature or statement beside a bundle (not a bundle)?
pub fn is_side_file(name: &str) -> bool {
    name.ends_with(SIG_SUFFIX) || name.ends_with(MSG_SUFFIX)
}

/// Copy the signature and statement beside `src` to beside `dst`, when there are any
/// (`barge copy` carries them with the bundle). Returns whether a signature travelled.
pub async fn carry(src: &Location, dst: &Location, opts: &StoreOptions) -> Result<bool> {
    if matches!(src, Location::Stdio) || matches!(dst, Location::Stdio) {
        return Ok(false);
    }
    let Some(sig) = read_side_file(&beside(src, SIG_SUFFIX)?, opts).await? else { return Ok(false) };
    if let Some(msg) = read_side_file(&beside(src, MSG_SUFFIX)?, opts).await? {
        write_side_file(&beside(dst, MSG_SUFFIX)?, opts, &msg).await?;
    }
    write_side_file(&beside(dst, SIG_SUFFIX)?, opts, &sig).await?;
    Ok(true)
}

/// Delete the signature and statement beside the bundle at `location`, where there are any
/// (after the bundle itself was deleted on success).
pub async fn delete_beside(location: &Location, opts: &StoreOptions) -> Result<()> {
    for suffix in [SIG_SUFFIX, MSG_SUFFIX] {
        let store = beside(location, suffix)?.open(opts)?;
        if let Some(info) = store.info().await? {
            store.delete(Some(&info.etag)).await?;
        }
    }
    Ok(())
}

/// What signed a bundle, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signer {
    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub fingerprint: String,
    /// The principals the allowed-signers file lists for the key (empty when signing).
    pub principals: Vec<String>,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {}", self.fingerprint)?;
        if !self.principals.is_empty() {
            write!(f, " ({})", self.principals.join(", "))?;
        }
        Ok(())
    }
}

/// Sign the bundle at `location` with `key`: `NAME.sig` and `NAME.sig.msg` beside it.
/// `digest` is the catalogDigest when the caller knows it (export just wrote the bundle).
pub async fn sign_bundle(
    location: &Location,
    opts: &StoreOptions,
    key: &SigningKey,
    digest: Option<Digest>,
    reporter: &dyn Reporter,
) -> Result<Signer> {
    let bundle = location.open(opts)?;
    let msg = beside(location, MSG_SUFFIX)?.open(opts)?;
    let sig = beside(location, SIG_SUFFIX)?.open(opts)?;
    sign_stores(bundle.as_ref(), msg.as_ref(), sig.as_ref(), key, digest, reporter).await
}

/// Sign the bundle in `bundle`: its statement into `msg`, the armored signature into `sig`.
pub async fn sign_stores(
    bundle: &dyn BlobStore,
    msg: &dyn BlobStore,
    sig: &dyn BlobStore,
    key: &SigningKey,
    digest: Option<Digest>,
    reporter: &dyn Reporter,
) -> Result<Signer> {
    let text = statement_of(bundle, digest, reporter).await?;
    let armored = key.sign(text.as_bytes())?;
    // The statement first: a signature never stands beside a statement it does not cover for long.
    write_text(msg, &text).await?;
    write_text(sig, &armored).await?;
    Ok(Signer { fingerprint: key.public_key().fingerprint(HashAlg::Sha256).to_string(), principals: Vec::new() })
}

/// A key that signs: a passphrase-free OpenSSH private key file, or a key an ssh-agent holds.
#[derive(Debug)]
pub enum SigningKey {
    File(Box<PrivateKey>),
    Agent { socket: PathBuf, key: PublicKey },
}

fn key_error(path: &Path, why: impl std::fmt::Display) -> TransferError {
    TransferError::SigningKey(format!("signing key {}: {why}", path.display()))
}

impl SigningKey {
    /// Read `path`: a private key file signs itself; a public key file names the
    /// key of the ssh-agent at `agent` (`SSH_AUTH_SOCK`) that signs.
    pub fn load(path: &Path, agent: Option<&Path>) -> Result<SigningKey> {
        let text =
            std::fs::read_to_string(path).map_err(|e| TransferError::io(format!("reading {}", path.display()), e))?;
        SigningKey::from_text(&text, path, agent)
    }

    /// A key from its file's text; `path` names it in errors.
    pub fn from_text(text: &str, path: &Path, agent: Option<&Path>) -> Result<SigningKey> {
        if text.trim_start().starts_with("-----BEGIN") {
            let key = PrivateKey::from_openssh(text.trim()).map_err(|e| {
                key_error(path, format!("not an OpenSSH private key ({e}); make one with ssh-keygen -t ed25519"))
            })?;
            if key.is_encrypted() {
                return Err(key_error(
                    path,
                    "has a passphrase; use a passphrase-free key or its public key with an ssh-agent that holds it",
                ));
            }
            return Ok(SigningKey::File(Box::new(key)));
        }
        let key = PublicKey::from_openssh(text.trim())
            .map_err(|e| key_error(path, format!("neither an OpenSSH private key nor a public key ({e})")))?;
        let Some(socket) = agent else {
            return Err(key_error(path, "is a public key, so an ssh-agent must sign, but SSH_AUTH_SOCK is not set"));
        };
        Ok(SigningKey::Agent { socket: socket.to_path_buf(), key })
    }

    pub fn public_key(&self) -> &PublicKey {
        match self {
            SigningKey::File(k) => k.public_key(),
            SigningKey::Agent { key, .. } => key,
        }
    }

    /// The armored SSHSIG of `msg` (namespace `barge-bundle`, sha512).
    pub fn sign(&self, msg: &[u8]) -> Result<String> {
        let sig = match self {
            SigningKey::File(k) => match k.key_data().rsa() {
                Some(rsa) => sign_rsa(rsa, msg)?,
                None => k.sign(NAMESPACE, HashAlg::Sha512, msg).map_err(|e| {
                    TransferError::SigningKey(format!("signing with key {}: {e}", k.fingerprint(HashAlg::Sha256)))
                })?,
            },
            SigningKey::Agent { socket, key } => {
                let data = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, msg).map_err(|e| agent_error(socket, e))?;
                let signature = agent::sign(socket, key, &data)?;
                SshSig::new(key.key_data().clone(), NAMESPACE, HashAlg::Sha512, signature)
                    .map_err(|e| agent_error(socket, e))?
            }
        };
        sig.to_pem(LineEnding::LF).map_err(|e| TransferError::SigningKey(format!("encoding the signature: {e}")))
    }
}

/// SSHSIG with an RSA key file (rsa-sha2-512), the key rebuilt from its own components.
fn sign_rsa(key: &ssh_key::private::RsaKeypair, msg: &[u8]) -> Result<SshSig> {
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    let bad = |why: &dyn std::fmt::Display| TransferError::SigningKey(format!("signing with an RSA key: {why}"));
    let int = |m: &ssh_key::Mpint| {
        m.as_positive_bytes().map(rsa::BigUint::from_bytes_be).ok_or_else(|| bad(&"a key component is not positive"))
    };
    let (public, private) = (&key.public, &key.private);
    let primes = vec![int(&private.p)?, int(&private.q)?];
    let secret = rsa::RsaPrivateKey::from_components(int(&public.n)?, int(&public.e)?, int(&private.d)?, primes)
        .map_err(|e| bad(&e))?;
    let data = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, msg).map_err(|e| bad(&e))?;
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(secret);
    let bytes = signer.try_sign(&data).map_err(|e| bad(&e))?.to_vec();
    let algorithm = ssh_key::Algorithm::Rsa { hash: Some(HashAlg::Sha512) };
    let signature = ssh_key::Signature::new(algorithm, bytes).map_err(|e| bad(&e))?;
    SshSig::new(ssh_key::public::KeyData::Rsa(public.clone()), NAMESPACE, HashAlg::Sha512, signature)
        .map_err(|e| bad(&e))
}

fn agent_error(socket: &Path, why: impl std::fmt::Display) -> TransferError {
    TransferError::SigningKey(format!("ssh-agent at {}: {why}", socket.display()))
}

/// The two requests of the ssh-agent protocol barge needs (draft-miller-ssh-agent): list keys, sign.
mod agent {
    use super::*;
    use std::os::unix::net::UnixStream;

    const REQUEST_IDENTITIES: u8 = 11;
    const IDENTITIES_ANSWER: u8 = 12;
    const SIGN_REQUEST: u8 = 13;
    const SIGN_RESPONSE: u8 = 14;
    /// SSHSIG signs with rsa-sha2-512.
    const RSA_SHA2_512: u32 = 4;

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }

    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if buf.len() < n {
            return None;
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Some(head)
    }

    fn take_u32(buf: &mut &[u8]) -> Option<u32> {
        take(buf, 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn take_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = take_u32(buf)? as usize;
        take(buf, n)
    }

    /// One request, one answer: (type, body).
    fn exchange(socket: &Path, body: &[u8]) -> Result<(u8, Vec<u8>)> {
        let mut s = UnixStream::connect(socket).map_err(|e| agent_error(socket, e))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).map_err(|e| agent_error(socket, e))?;
        let mut msg = Vec::with_capacity(body.len() + 4);
        string(&mut msg, body);
        s.write_all(&msg).map_err(|e| agent_error(socket, e))?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| agent_error(socket, e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > 256 * 1024 {
            return Err(agent_error(socket, format!("an answer of {len} bytes is not one")));
        }
        let mut answer = vec![0u8; len];
        s.read_exact(&mut answer).map_err(|e| agent_error(socket, e))?;
        Ok((answer[0], answer[1..].to_vec()))
    }

    /// The key blobs the agent holds.
    fn identities(socket: &Path) -> Result<Vec<Vec<u8>>> {
        let (kind, body) = exchange(socket, &[REQUEST_IDENTITIES])?;
        let bad = || agent_error(socket, "a malformed list of keys");
        if kind != IDENTITIES_ANSWER {
            return Err(agent_error(socket, format!("answered the list of keys with message {kind}")));
        }
        let mut buf = body.as_slice();
        let n = take_u32(&mut buf).ok_or_else(bad)?;
        let mut keys = Vec::new();
        for _ in 0..n {
            keys.push(take_string(&mut buf).ok_or_else(bad)?.to_vec());
            take_string(&mut buf).ok_or_else(bad)?;
        }
        Ok(keys)
    }

    pub(super) fn sign(socket: &Path, key: &PublicKey, data: &[u8]) -> Result<ssh_key::Signature> {
        let blob = key.to_bytes().map_err(|e| agent_error(socket, e))?;
        if !identities(socket)?.contains(&blob) {
            let fp = key.fingerprint(HashAlg::Sha256);
            return Err(agent_error(socket, format!("holds no key {fp}; add it with ssh-add")));
        }
        let mut req = vec![SIGN_REQUEST];
        string(&mut req, &blob);
        string(&mut req, data);
        let flags = if key.algorithm().is_rsa() { RSA_SHA2_512 } else { 0 };
        req.extend_from_slice(&flags.to_be_bytes());
        let (kind, body) = exchange(socket, &req)?;
        if kind != SIGN_RESPONSE {
            return Err(agent_error(socket, format!("refused to sign (message {kind})")));
        }
        let mut buf = body.as_slice();
        let sig = take_string(&mut buf).ok_or_else(|| agent_error(socket, "a malformed signature"))?;
        ssh_key::Signature::try_from(sig).map_err(|e| agent_error(socket, e))
    }
}

/// One line of an allowed-signers file.
#[derive(Debug, Clone)]
struct Allowed {
    principals: Vec<String>,
    key: PublicKey,
    /// `namespaces="…"`: the namespaces the key may sign for; `None`: any.
    namespaces: Option<Vec<String>>,
}

/// The keys that may sign bundles: ssh-keygen's allowed-signers format
/// (`PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`). Of the options, `namespaces`
/// is honoured; `cert-authority`, `valid-after` and `valid-before` are refused.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    entries: Vec<Allowed>,
}

/// Split on whitespace, keeping double-quoted runs whole.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Split on commas outside double quotes.
fn comma_list(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-") || s.starts_with("rsa-")
}

impl AllowedSigners {
    /// Parse the file's text; `name` names it in errors.
    pub fn parse(text: &str, name: &str) -> Result<AllowedSigners> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| TransferError::AllowedSigners(format!("{name} line {}: {why}", i + 1));
            entries.push(Self::line(line).map_err(bad)?);
        }
        if entries.is_empty() {
            return Err(TransferError::AllowedSigners(format!("{name} lists no key")));
        }
        Ok(AllowedSigners { entries })
    }

    fn line(line: &str) -> std::result::Result<Allowed, String> {
        let f = fields(line);
        let principals: Vec<String> = comma_list(f.first().map(String::as_str).unwrap_or(""));
        let (options, k) = match f.get(1) {
            Some(t) if is_key_type(t) => (None, 1),
            Some(t) => (Some(t.as_str()), 2),
            None => return Err("no key; a line is PRINCIPALS [OPTIONS] KEYTYPE BASE64".into()),
        };
        let (Some(kind), Some(b64)) = (f.get(k), f.get(k + 1)) else {
            return Err("no key; a line is PRINCIPALS [OPTIONS] KEYTYPE BASE64".into());
        };
        let key =
            PublicKey::from_openssh(&format!("{kind} {b64}")).map_err(|e| format!("the key does not parse ({e})"))?;
        let mut namespaces = None;
        for opt in options.map(comma_list).unwrap_or_default() {
            let (name, value) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
            match name.to_ascii_lowercase().as_str() {
                "namespaces" => namespaces = Some(value.split(',').map(|s| s.trim().to_string()).collect()),
                "cert-authority" => {
                    return Err(
                        "cert-authority (keys that sign certificates) is not supported; list the signers' own keys"
                            .into(),
                    )
                }
                other => return Err(format!("the option {other:?} is not supported (only namespaces=\"…\" is)")),
            }
        }
        Ok(Allowed { principals, key, namespaces })
    }

    /// Check `armored` (`None`: no signature was found) over `statement`, the one rebuilt from `bundle`.
    pub fn check(&self, statement: &str, armored: Option<&str>, bundle: &str) -> Result<Signer> {
        let Some(armored) = armored else {
            return Err(TransferError::SignatureMissing(bundle.to_string()));
        };
        let refuse = |signer: &Signer, why: &str| TransferError::SignatureRefused {
            bundle: bundle.to_string(),
            signer: signer.to_string(),
            why: why.to_string(),
        };
        let sig = SshSig::from_pem(armored.trim()).map_err(|e| TransferError::SignatureRefused {
            bundle: bundle.to_string(),
            signer: "no one".into(),
            why: format!("its signature is not an SSH signature ({e})"),
        })?;
        let mut signer =
            Signer { fingerprint: sig.public_key().fingerprint(HashAlg::Sha256).to_string(), principals: vec![] };
        let Some(entry) = self.entries.iter().find(|e| e.key.key_data() == sig.public_key()) else {
            return Err(refuse(&signer, "the key is not in the allowed signers"));
        };
        signer.principals = entry.principals.clone();
        if sig.namespace() != NAMESPACE {
            return Err(refuse(
                &signer,
                &format!("it was signed for namespace {:?}, not {NAMESPACE:?}", sig.namespace()),
            ));
        }
        if entry.namespaces.as_ref().is_some_and(|n| !n.iter().any(|n| n == NAMESPACE)) {
            return Err(refuse(
                &signer,
                &format!("the allowed signers do not allow this key for namespace {NAMESPACE:?}"),
            ));
        }
        if entry.key.verify(NAMESPACE, statement.as_bytes(), &sig).is_err() {
            let why = "the signature does not match this bundle (another bundle, or its catalog or bytes changed since it was signed)";
            return Err(refuse(&signer, why));
        }
        Ok(signer)
    }
}

/// What an import checks before it writes anything.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    pub allowed: std::sync::Arc<AllowedSigners>,
    /// Refuse a bundle without a signature; otherwise only a signature found is checked.
    pub required: bool,
    /// The armored `NAME.sig` found beside the bundle, if any.
    pub signature: Option<String>,
}

impl SignatureCheck {
    /// Is there anything to check?
    pub fn applies(&self) -> bool {
        self.required || self.signature.is_some()
    }

    /// Read `NAME.sig` beside the bundle at `location` and build the check.
    pub async fn beside(
        location: &Location,
        opts: &StoreOptions,
        allowed: std::sync::Arc<AllowedSigners>,
        required: bool,
    ) -> Result<SignatureCheck> {
        let signature = match location {
            Location::Stdio if !required => None,
            _ => read_side_file(&beside(location, SIG_SUFFIX)?, opts).await?,
        };
        Ok(SignatureCheck { allowed, required, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCyNyq52cwStFDhGEa+ljLBV5VrvqrmqjEfIwp2Tc45XQAAAIhy+1uqcvtb
qgAAAAtzc2gtZWQyNTUxOQAAACCyNyq52cwStFDhGEa+ljLBV5VrvqrmqjEfIwp2Tc45XQ
AAAEAL4+r+sPL+z5YRXnw8LJX7cSoP3mzk2sNXyX0jQLUfu7I3KrnZzBK0UOEYRr6WMsFX
lWu+quaqMR8jCnZNzjldAAAABHRlc3QB
-----END OPENSSH PRIVATE KEY-----";

    #[test]
    fn a_signature_made_here_is_checked_here_and_names_its_bundle() {
        // A throwaway key made by `ssh-keygen -t ed25519 -N ''` for this test alone.
        let key = PrivateKey::from_openssh(TEST_KEY).unwrap();
        let line = format!("ops@example.org {}", key.public_key().to_openssh().unwrap());
        let allowed = AllowedSigners::parse(&line, "f").unwrap();
        let signer = SigningKey::File(Box::new(key));
        let text = "barge-bundle-signature v1\ncatalogDigest sha256:00\n";
        let armored = signer.sign(text.as_bytes()).unwrap();
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"), "{armored}");
        let who = allowed.check(text, Some(&armored), "b.tar").unwrap();
        assert_eq!(who.principals, vec!["ops@example.org"]);
        let other = allowed.check("barge-bundle-signature v1\n", Some(&armored), "b.tar").unwrap_err();
        assert!(other.to_string().contains("(ops@example.org): the signature does not match"), "{other}");
        assert!(matches!(allowed.check(text, None, "b.tar"), Err(TransferError::SignatureMissing(_))));
    }

    #[test]
    fn allowed_signers_lines() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKdE5J1mVvXk0BqFhIw6jq+Ti7a2sLpEj7Q2iYGz3yJ6";
        let ok = format!("a@b,c@d namespaces=\"barge-bundle,git\" {key} comment\n# x\n\nops {key}\n");
        let s = AllowedSigners::parse(&ok, "f").unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].principals, vec!["a@b", "c@d"]);
        assert_eq!(s.entries[0].namespaces.as_deref(), Some(&["barge-bundle".to_string(), "git".to_string()][..]));
        let ca = AllowedSigners::parse(&format!("a cert-authority {key}"), "f").unwrap_err().to_string();
        assert!(ca.contains("f line 1") && ca.contains("cert-authority"), "{ca}");
        let va = AllowedSigners::parse(&format!("a valid-after=\"20200101\" {key}"), "f").unwrap_err().to_string();
        assert!(va.contains("valid-after"), "{va}");
        assert!(AllowedSigners::parse("# nothing\n", "f").unwrap_err().to_string().contains("lists no key"));
    }
}
