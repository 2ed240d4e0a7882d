//! Keys and sealing: the master key, its password wrapping (argon2id), ChaCha20-Poly1305
//! sealing of blobs, and keyed BLAKE3 chunk ids.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, corrupt};
use crate::hex;

/// Length of a ChaCha20-Poly1305 nonce.
const NONCE: usize = 12;
/// Length of a Poly1305 tag.
const TAG: usize = 16;

/// Argon2id cost parameters stored with the wrapped key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
}

impl Default for KdfParams {
    /// OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        KdfParams {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

/// `keys/master`: the master key wrapped by a password-derived key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyFile {
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
    wrapped: String,
}

/// The repository's secret keys, or none when encryption is off.
#[derive(Clone)]
pub struct Keys {
    cipher: Option<ChaCha20Poly1305>,
    id_key: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Fills a buffer from the operating system's random source.
pub fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is not a recoverable condition for key generation.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

impl Keys {
    /// New random keys; `encrypt` false keeps only the id key (stored in the clear).
    pub(crate) fn generate(encrypt: bool) -> (Keys, [u8; 64]) {
        let master: [u8; 64] = random();
        (Keys::from_master(&master, encrypt), master)
    }

    /// Keys from 64 bytes of master key material.
    pub(crate) fn from_master(master: &[u8; 64], encrypt: bool) -> Keys {
        let mut id_key = [0u8; 32];
        id_key.copy_from_slice(&master[32..]);
        let cipher = encrypt.then(|| ChaCha20Poly1305::new(Key::from_slice(&master[..32])));
        Keys { cipher, id_key }
    }

    /// The chunk id of `data`: keyed BLAKE3.
    pub fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.id_key, data).as_bytes()
    }

    /// Seals `plain` (nonce || ciphertext || tag), or returns it as is without encryption.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        match &self.cipher {
            None => plain.to_vec(),
            Some(cipher) => {
                let nonce: [u8; NONCE] = random();
                let mut out = nonce.to_vec();
                // Encryption only fails for plaintexts beyond 256 GiB, far above any blob.
                let sealed = cipher
                    .encrypt(Nonce::from_slice(&nonce), plain)
                    .expect("plaintext within ChaCha20-Poly1305 limits");
                out.extend_from_slice(&sealed);
                out
            }
        }
    }

    /// Opens a sealed buffer read from `path`; a failed tag is a corrupt file.
    pub fn open(&self, sealed: &[u8], path: &Path) -> Result<Vec<u8>> {
        match &self.cipher {
            None => Ok(sealed.to_vec()),
            Some(cipher) => {
                if sealed.len() < NONCE + TAG {
                    return Err(corrupt(path, "sealed data is shorter than nonce and tag"));
                }
                let (nonce, body) = sealed.split_at(NONCE);
                cipher
                    .decrypt(Nonce::from_slice(nonce), body)
                    .map_err(|_| corrupt(path, "authentication failed (data was changed)"))
            }
        }
    }
}

/// Derives the wrapping cipher from a password.
fn wrapping_cipher(password: &[u8], salt: &[u8], params: KdfParams) -> Result<ChaCha20Poly1305> {
    let argon_params = Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| Error::Config(format!("argon2id parameters: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(password, salt, &mut key)
        .map_err(|e| Error::Config(format!("argon2id: {e}")))?;
    Ok(ChaCha20Poly1305::new(Key::from_slice(&key)))
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub(crate) fn wrap(master: &[u8; 64], password: &[u8], params: KdfParams) -> Result<KeyFile> {
        let salt: [u8; 16] = random();
        let cipher = wrapping_cipher(password, &salt, params)?;
        let nonce: [u8; NONCE] = random();
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(
            &cipher
                .encrypt(Nonce::from_slice(&nonce), master.as_slice())
                .expect("64 bytes are within ChaCha20-Poly1305 limits"),
        );
        Ok(KeyFile {
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(&salt),
            wrapped: hex::encode(&wrapped),
        })
    }

    /// Unwraps the master key; `repo` names the repository in a wrong-password error.
    pub(crate) fn unwrap(&self, password: &[u8], path: &Path, repo: &Path) -> Result<[u8; 64]> {
        if self.kdf != "argon2id" {
            return Err(corrupt(path, format!("unknown kdf `{}`", self.kdf)));
        }
        let salt = hex::decode(&self.salt).ok_or_else(|| corrupt(path, "salt is not hex"))?;
        let wrapped =
            hex::decode(&self.wrapped).ok_or_else(|| corrupt(path, "wrapped key is not hex"))?;
        if wrapped.len() != NONCE + 64 + TAG {
            return Err(corrupt(path, "wrapped key has the wrong length"));
        }
        let cipher = wrapping_cipher(password, &salt, self.params)
            .map_err(|_| corrupt(path, "argon2id parameters out of range"))?;
        let (nonce, body) = wrapped.split_at(NONCE);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| Error::WrongPassword(repo.to_path_buf()))?;
        let mut master = [0u8; 64];
        master.copy_from_slice(&plain);
        Ok(master)
    }
}
