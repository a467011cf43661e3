//! TPM PCR banks: the hash each bank uses and the extend operation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A PCR bank kiln predicts. sha256 is always predicted; sha1 and sha384
/// on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bank {
    Sha1,
    Sha256,
    Sha384,
}

impl Bank {
    pub const ALL: [Bank; 3] = [Bank::Sha1, Bank::Sha256, Bank::Sha384];

    pub fn name(self) -> &'static str {
        match self {
            Bank::Sha1 => "sha1",
            Bank::Sha256 => "sha256",
            Bank::Sha384 => "sha384",
        }
    }

    /// Digest length in bytes.
    pub fn size(self) -> usize {
        match self {
            Bank::Sha1 => 20,
            Bank::Sha256 => 32,
            Bank::Sha384 => 48,
        }
    }

    /// The TCG algorithm id (TPM_ALG_ID) used in event logs.
    pub fn alg_id(self) -> u16 {
        match self {
            Bank::Sha1 => 0x0004,
            Bank::Sha256 => 0x000B,
            Bank::Sha384 => 0x000C,
        }
    }

    pub fn from_alg_id(id: u16) -> Option<Bank> {
        Bank::ALL.into_iter().find(|b| b.alg_id() == id)
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Bank::Sha1 => Hasher::Sha1(sha1::Sha1::default()),
            Bank::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Bank::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
        }
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish()
    }

    /// The reset value of PCRs 0–15: all zeros.
    pub fn zero(self) -> Vec<u8> {
        vec![0; self.size()]
    }

    /// `PCR := H(PCR || digest)`.
    pub fn extend(self, pcr: &[u8], digest: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(pcr);
        h.update(digest);
        h.finish()
    }
}

impl fmt::Display for Bank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PCR bank `{0}`; kiln predicts sha1, sha256 and sha384")]
pub struct UnknownBank(pub String);

impl FromStr for Bank {
    type Err = UnknownBank;

    fn from_str(s: &str) -> Result<Bank, UnknownBank> {
        let lower = s.to_ascii_lowercase();
        Bank::ALL
            .into_iter()
            .find(|b| b.name() == lower || b.name().replace("sha", "sha-") == lower)
            .ok_or_else(|| UnknownBank(s.to_owned()))
    }
}

/// An incremental hash in one bank's algorithm. sha1 comes from the
/// `sha1` crate (digest 0.10), sha256/384 from `sha2` 0.11, so this is an
/// enum rather than one generic `Digest`.
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => sha1::Digest::update(h, data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => sha1::Digest::finalize(h).to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
        }
    }
}

/// Hashes the same bytes in several banks at once.
pub struct MultiHasher {
    hashers: Vec<(Bank, Hasher)>,
}

impl MultiHasher {
    pub fn new(banks: &[Bank]) -> MultiHasher {
        MultiHasher {
            hashers: banks.iter().map(|b| (*b, b.hasher())).collect(),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        for (_, h) in &mut self.hashers {
            h.update(data);
        }
    }

    pub fn finish(self) -> Digests {
        Digests(
            self.hashers
                .into_iter()
                .map(|(b, h)| (b, h.finish()))
                .collect(),
        )
    }
}

/// One digest per bank.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests(pub std::collections::BTreeMap<Bank, Vec<u8>>);

impl Digests {
    pub fn of(banks: &[Bank], data: &[u8]) -> Digests {
        let mut m = MultiHasher::new(banks);
        m.update(data);
        m.finish()
    }

    pub fn get(&self, bank: Bank) -> Option<&[u8]> {
        self.0.get(&bank).map(Vec::as_slice)
    }

    pub fn banks(&self) -> impl Iterator<Item = Bank> + '_ {
        self.0.keys().copied()
    }
}

impl Serialize for Digests {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (bank, digest) in &self.0 {
            map.serialize_entry(bank.name(), &hex::encode(digest))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Digests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = std::collections::BTreeMap::<Bank, String>::deserialize(d)?;
        let mut out = std::collections::BTreeMap::new();
        for (bank, text) in raw {
            let bytes = hex::decode(&text)
                .map_err(|e| D::Error::custom(format!("{bank} digest `{text}`: {e}")))?;
            if bytes.len() != bank.size() {
                return Err(D::Error::custom(format!(
                    "{bank} digest `{text}` has {} bytes, not {}",
                    bytes.len(),
                    bank.size()
                )));
            }
            out.insert(bank, bytes);
        }
        Ok(Digests(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_and_extend() {
        assert_eq!(
            hex::encode(Bank::Sha256.hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(Bank::Sha1.hash(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            &hex::encode(Bank::Sha384.hash(b"abc"))[..16],
            "cb00753f45a35e8b"
        );
        let d = Bank::Sha256.hash(b"x");
        let mut cat = Bank::Sha256.zero();
        cat.extend_from_slice(&d);
        assert_eq!(
            Bank::Sha256.extend(&Bank::Sha256.zero(), &d),
            Bank::Sha256.hash(&cat)
        );
    }

    #[test]
    fn names_round_trip() {
        for b in Bank::ALL {
            assert_eq!(b.name().parse::<Bank>(), Ok(b));
            assert_eq!(Bank::from_alg_id(b.alg_id()), Some(b));
        }
        assert_eq!("SHA-256".parse::<Bank>(), Ok(Bank::Sha256));
        assert!("md5".parse::<Bank>().is_err());
    }
}
