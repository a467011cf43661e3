//! A build's measurement manifest (`NAME-measurements.json`, see
//! docs/measurements.md) as the build page's PCR table shows it: each
//! predicted PCR's value per bank, its events, and which PCRs hold only on
//! the reference VM model the manifest names.

use serde::Deserialize;

use super::api::Artifact;

/// The media type the service gives measurement manifests.
pub const MEDIA_TYPE: &str = "application/vnd.kiln.measurements.v1+json";

/// `(bank, hex digest)` pairs in the manifest's order (banks sorted).
pub type Digests = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub artifact: ArtifactName,
    pub reference_model: Model,
    pub banks: Vec<String>,
    pub pcrs: Vec<Pcr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ArtifactName {
    pub name: String,
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Model {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pcr {
    pub pcr: u32,
    /// `artifact`, `artifact-and-model` or `model`.
    pub basis: String,
    #[serde(deserialize_with = "digests")]
    pub values: Digests,
    pub events: Vec<Event>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "digests")]
    pub digests: Digests,
    pub description: String,
    /// `artifact` or `model`.
    pub basis: String,
}

/// A `{bank: hex}` object as pairs, without a map type (smaller WASM).
fn digests<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Digests, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Digests;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of bank names and hex digests")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Digests, A::Error> {
            let mut out = Vec::new();
            while let Some(pair) = map.next_entry::<String, String>()? {
                out.push(pair);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs)
}

/// The measurement manifests among a build's artifacts.
pub fn manifests(artifacts: &[Artifact]) -> impl Iterator<Item = &Artifact> {
    artifacts.iter().filter(|a| a.media_type == MEDIA_TYPE)
}

impl Pcr {
    /// The PCR's predicted value in `bank`.
    pub fn value(&self, bank: &str) -> Option<&str> {
        lookup(&self.values, bank)
    }

    /// Whether the value holds only on the reference VM model.
    pub fn needs_model(&self) -> bool {
        self.basis != "artifact"
    }
}

impl Event {
    pub fn digest(&self, bank: &str) -> Option<&str> {
        lookup(&self.digests, bank)
    }
}

fn lookup<'a>(digests: &'a Digests, bank: &str) -> Option<&'a str> {
    digests
        .iter()
        .find(|(b, _)| b == bank)
        .map(|(_, v)| v.as_str())
}

/// Words for a PCR's or an event's basis.
pub fn basis_label(basis: &str) -> &'static str {
    match basis {
        "artifact" => "artifact",
        "artifact-and-model" => "artifact + VM model",
        "model" => "VM model",
        _ => "unknown",
    }
}

/// `[2, 3, 9]` → `2, 3 and 9`.
fn list(pcrs: &[u32]) -> String {
    let words: Vec<String> = pcrs.iter().map(u32::to_string).collect();
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn pcr_word(n: usize) -> &'static str {
    if n == 1 {
        "PCR"
    } else {
        "PCRs"
    }
}

impl Manifest {
    pub fn pcr(&self, pcr: u32) -> Option<&Pcr> {
        self.pcrs.iter().find(|p| p.pcr == pcr)
    }

    /// Which PCRs depend on the reference VM model and which follow from
    /// the artifact alone, as a sentence.
    pub fn model_note(&self) -> String {
        let (model, own): (Vec<&Pcr>, Vec<&Pcr>) = self.pcrs.iter().partition(|p| p.needs_model());
        let model: Vec<u32> = model.iter().map(|p| p.pcr).collect();
        let own: Vec<u32> = own.iter().map(|p| p.pcr).collect();
        let name = &self.reference_model.name;
        let mut parts = Vec::new();
        if !model.is_empty() {
            parts.push(format!(
                "{} {} {} on the reference VM model {name}: they hold only when the artifact \
                 boots on that model.",
                pcr_word(model.len()),
                list(&model),
                if model.len() == 1 {
                    "depends"
                } else {
                    "depend"
                },
            ));
        }
        if !own.is_empty() {
            parts.push(format!(
                "{} {} {} from the artifact alone, on any UEFI firmware.",
                pcr_word(own.len()),
                list(&own),
                if own.len() == 1 { "follows" } else { "follow" },
            ));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
      "manifestVersion": 1,
      "artifact": {"name": "os.efi", "format": "uki", "size": 3, "digests": {"sha256": "aa"}},
      "referenceModel": {"name": "qemu-q35-ovmf-nodefaults", "secureBoot": false, "assumptions": ["x"]},
      "banks": ["sha1", "sha256"],
      "components": {"uki": {"size": 3, "digests": {"sha256": "aa"}}},
      "pcrs": [
        {"pcr": 4, "basis": "artifact-and-model", "values": {"sha1": "04", "sha256": "44"},
         "events": [{"pcr": 4, "type": "EV_EFI_ACTION", "digests": {"sha1": "a1", "sha256": "b1"},
                     "description": "Calling EFI Application from Boot Option", "basis": "model"}],
         "note": "n"},
        {"pcr": 7, "basis": "model", "values": {"sha1": "07", "sha256": "77"}, "events": [], "note": "n"},
        {"pcr": 11, "basis": "artifact", "values": {"sha1": "0b", "sha256": "bb"},
         "events": [{"pcr": 11, "type": "EV_IPL", "digests": {"sha1": "c1", "sha256": "d1"},
                     "description": ".linux", "basis": "artifact"}],
         "note": "n"}
      ],
      "systemdMeasure": {"sha256": [{"pcr": 11, "hash": "bb"}]}
    }"#;

    fn manifest() -> Manifest {
        serde_json::from_str(MANIFEST).unwrap()
    }

    #[test]
    fn reads_values_per_bank_and_events() {
        let m = manifest();
        assert_eq!(m.banks, ["sha1", "sha256"]);
        let p11 = m.pcr(11).unwrap();
        assert_eq!(p11.value("sha256"), Some("bb"));
        assert_eq!(p11.value("sha1"), Some("0b"));
        assert_eq!(p11.value("sha384"), None);
        assert_eq!(p11.events[0].kind, "EV_IPL");
        assert_eq!(p11.events[0].digest("sha256"), Some("d1"));
        assert!(!p11.needs_model());
        assert!(m.pcr(4).unwrap().needs_model());
        assert!(m.pcr(9).is_none());
    }

    #[test]
    fn says_which_pcrs_depend_on_the_model() {
        assert_eq!(
            manifest().model_note(),
            "PCRs 4 and 7 depend on the reference VM model qemu-q35-ovmf-nodefaults: they hold \
             only when the artifact boots on that model. PCR 11 follows from the artifact alone, \
             on any UEFI firmware."
        );
        let mut m = manifest();
        m.pcrs.retain(|p| p.pcr != 11);
        m.pcrs.push(m.pcrs[0].clone());
        m.pcrs[2].pcr = 5;
        assert!(m.model_note().starts_with("PCRs 4, 7 and 5 depend"));
        m.pcrs.truncate(1);
        assert!(m.model_note().starts_with("PCR 4 depends"));
    }

    #[test]
    fn finds_manifests_among_artifacts() {
        let a = |name: &str, media_type: &str| Artifact {
            name: name.into(),
            size: 1,
            sha256: "00".into(),
            media_type: media_type.into(),
            url: format!("/api/v1/builds/b/artifacts/{name}"),
        };
        let all = [
            a("os.efi", "application/vnd.kiln.uki"),
            a("os-measurements.json", MEDIA_TYPE),
            a(
                "os-measurements.json.dsse",
                "application/vnd.dsse.envelope.v1+json",
            ),
        ];
        let found: Vec<&str> = manifests(&all).map(|a| a.name.as_str()).collect();
        assert_eq!(found, ["os-measurements.json"]);
    }

    #[test]
    fn bad_manifests_are_errors() {
        assert!(serde_json::from_str::<Manifest>("{}").is_err());
        let bad = MANIFEST.replace(r#""values": {"sha1": "07""#, r#""values": {"sha1": 7"#);
        assert!(serde_json::from_str::<Manifest>(&bad).is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(basis_label("artifact-and-model"), "artifact + VM model");
        assert_eq!(basis_label("model"), "VM model");
        assert_eq!(basis_label("other"), "unknown");
    }
}
