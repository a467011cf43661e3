//! A build as its event stream tells it: the reducer behind the build page.
//! Events arrive numbered; a reconnecting stream may repeat some, so
//! anything at or below the last number seen is ignored.

use serde::Deserialize;

use super::api::{Artifact, Build, ContentTrust};
use super::json::{self, Error, FromJson, Json};

/// One image of the build, as resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub reference: String,
    pub digest: Option<String>,
    /// Served from the server's store rather than pulled.
    pub cached: bool,
    /// The trust verdict when the build reports one (`verified`, `unsigned`,
    /// `not-required`, ...), with who signed or why not.
    pub trust: Option<Trust>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Trust {
    pub status: String,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub seq: i64,
    pub text: String,
}

/// Everything the build page shows, rebuilt from events.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub state: String,
    pub formats: Vec<String>,
    pub log: Vec<LogLine>,
    pub images: Vec<ImageRow>,
    pub artifacts: Vec<Artifact>,
    pub error: Option<String>,
    pub seconds: Option<f64>,
    pub last_seq: i64,
    /// Writing the outputs has started.
    pub writing: bool,
    /// The build's content trust record, once the server has one.
    pub content_trust: Option<ContentTrust>,
}

struct StateData {
    state: String,
    reason: Option<String>,
    attempt: Option<i64>,
}

struct LogData {
    message: String,
}

struct PlanData {
    images: Vec<String>,
}

struct ImageData {
    reference: String,
    digest: String,
    cached: bool,
    trust: Option<Trust>,
}

struct EndData {
    state: String,
    error: Option<String>,
    seconds: Option<f64>,
}

struct ArtifactData {
    name: String,
    size: u64,
    sha256: String,
    media_type: String,
}

impl FromJson for Trust {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Trust {
            status: j.str("status")?,
            detail: j.opt_str("detail")?,
        })
    }
}

impl FromJson for StateData {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(StateData {
            state: j.str("state")?,
            reason: j.opt_str("reason")?,
            attempt: match j.get("attempt") {
                None | Some(Json::Null) => None,
                Some(_) => Some(j.i64("attempt")?),
            },
        })
    }
}

impl FromJson for LogData {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(LogData {
            message: j.str("message")?,
        })
    }
}

impl FromJson for PlanData {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(PlanData {
            images: j.list("images")?,
        })
    }
}

impl FromJson for ImageData {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(ImageData {
            reference: j.str("reference")?,
            digest: j.str("digest")?,
            cached: match j.get("cached") {
                None => false,
                Some(_) => j.bool("cached")?,
            },
            trust: j.opt("trust")?,
        })
    }
}

impl FromJson for EndData {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(EndData {
            state: j.str("state")?,
            error: j.opt_str("error")?,
            seconds: match j.get("seconds") {
                None | Some(Json::Null) => None,
                Some(Json::Num(n)) => Some(*n),
                Some(_) => return Err("`seconds` is not a number".into()),
            },
        })
    }
}

impl FromJson for ArtifactData {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(ArtifactData {
            name: j.str("name")?,
            size: j.u64("size")?,
            sha256: j.str("sha256")?,
            media_type: j.str("media_type")?,
        })
    }
}

impl Progress {
    /// The starting point for `build` (its state; artifacts if it is done).
    pub fn new(build: &Build) -> Progress {
        Progress {
            state: build.state.clone(),
            formats: build.formats.clone(),
            log: Vec::new(),
            images: Vec::new(),
            artifacts: build.artifacts.clone(),
            error: build.error.clone(),
            seconds: None,
            last_seq: 0,
            writing: false,
            content_trust: build.content_trust.clone(),
        }
    }

    /// Takes what a fresh `GET` of the build adds to the events: its trust
    /// record and the artifacts.
    pub fn refresh(&mut self, build: &Build) {
        if build.content_trust.is_some() {
            self.content_trust = build.content_trust.clone();
        }
        for a in &build.artifacts {
            if !self.artifacts.iter().any(|x| x.name == a.name) {
                self.artifacts.push(a.clone());
            }
        }
    }

    /// The trust verdict for `row`: an event's own, else the build's record
    /// (verified by which key, not required, or switched off), else none
    /// while the images are not checked yet.
    pub fn trust_of(&self, row: &ImageRow) -> Option<Trust> {
        if row.trust.is_some() {
            return row.trust.clone();
        }
        let record = self.content_trust.as_ref()?;
        if record.disabled {
            return Some(Trust {
                status: "disabled".into(),
                detail: Some("content trust was switched off for this build".into()),
            });
        }
        Some(
            match record.verified.iter().find(|v| {
                v.image == row.reference || row.digest.as_deref() == Some(v.digest.as_str())
            }) {
                Some(v) => Trust {
                    status: "verified".into(),
                    detail: Some(format!("key {} of `{}`", v.key_fingerprint, v.trust_root)),
                },
                None => Trust {
                    status: "not required".into(),
                    detail: None,
                },
            },
        )
    }

    pub fn ended(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }

    /// Applies event `seq` of `kind` with JSON `data`. Unknown kinds and
    /// malformed data become log lines rather than being lost.
    pub fn apply(&mut self, seq: i64, kind: &str, data: &str, build_id: &str) {
        if seq <= self.last_seq {
            return;
        }
        self.last_seq = seq;
        // Read with the small JSON reader: serde's derived readers would
        // cost the WASM module kilobytes per event type.
        let line = match kind {
            "state" => match json::from_str::<StateData>(data) {
                Ok(s) => {
                    let mut text = format!("state: {}", s.state);
                    if let Some(a) = s.attempt {
                        text.push_str(&format!(" (attempt {a})"));
                    }
                    if let Some(r) = &s.reason {
                        text.push_str(&format!(" ({r})"));
                    }
                    // A page opened on a finished build replays its whole
                    // stream: its early states must not undo the end.
                    if !self.ended() {
                        self.state = s.state;
                    }
                    text
                }
                Err(_) => format!("state: {data}"),
            },
            "log" => json::from_str::<LogData>(data)
                .map(|l| l.message)
                .unwrap_or_else(|_| data.to_owned()),
            "plan" => match json::from_str::<PlanData>(data) {
                Ok(p) => {
                    for reference in &p.images {
                        if !self.images.iter().any(|i| &i.reference == reference) {
                            self.images.push(ImageRow {
                                reference: reference.clone(),
                                digest: None,
                                cached: false,
                                trust: None,
                            });
                        }
                    }
                    format!("{} images to resolve", p.images.len())
                }
                Err(_) => format!("plan: {data}"),
            },
            "image" => match json::from_str::<ImageData>(data) {
                Ok(i) => {
                    let text = format!("image {} is {}", i.reference, i.digest);
                    let row = ImageRow {
                        reference: i.reference,
                        digest: Some(i.digest),
                        cached: i.cached,
                        trust: i.trust,
                    };
                    match self
                        .images
                        .iter_mut()
                        .find(|r| r.reference == row.reference)
                    {
                        Some(existing) => *existing = row,
                        None => self.images.push(row),
                    }
                    text
                }
                Err(_) => format!("image: {data}"),
            },
            "artifact" => match json::from_str::<ArtifactData>(data) {
                Ok(a) => {
                    self.writing = true;
                    let text = format!("wrote {} ({} bytes)", a.name, a.size);
                    if !self.artifacts.iter().any(|x| x.name == a.name) {
                        self.artifacts.push(Artifact {
                            url: format!("/api/v1/builds/{build_id}/artifacts/{}", a.name),
                            name: a.name,
                            size: a.size,
                            sha256: a.sha256,
                            media_type: a.media_type,
                        });
                    }
                    text
                }
                Err(_) => format!("artifact: {data}"),
            },
            "end" => match json::from_str::<EndData>(data) {
                Ok(e) => {
                    let mut text = e.state.clone();
                    if let Some(s) = e.seconds {
                        let ms = (s.max(0.0) * 1000.0) as u64;
                        text.push_str(&format!(" in {}", super::units::seconds(ms)));
                    }
                    if let Some(err) = &e.error {
                        text.push_str(&format!(": {err}"));
                    }
                    self.state = e.state;
                    self.error = e.error;
                    self.seconds = e.seconds;
                    text
                }
                Err(_) => format!("end: {data}"),
            },
            other => format!("{other}: {data}"),
        };
        if kind == "log" && line.starts_with("writing ") {
            self.writing = true;
        }
        self.log.push(LogLine { seq, text: line });
    }

    /// Overall progress in percent: queued 0, running 10, resolving images
    /// up to 50, writing up to 95, ended 100.
    pub fn percent(&self) -> u32 {
        if self.ended() {
            return 100;
        }
        match self.state.as_str() {
            "queued" => 0,
            _ if self.writing => {
                let expected = self.formats.len().max(1) as u32;
                50 + (45 * (self.artifacts.len() as u32).min(expected) / expected)
            }
            _ if !self.images.is_empty() => {
                let done = self.images.iter().filter(|i| i.digest.is_some()).count() as u32;
                10 + 40 * done / self.images.len() as u32
            }
            _ => 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_build_stays_finished_while_its_stream_replays() {
        let mut p = Progress::new(&build("succeeded"));
        p.apply(1, "state", r#"{"state":"queued"}"#, "b1");
        p.apply(2, "state", r#"{"state":"running","attempt":1}"#, "b1");
        assert_eq!(p.state, "succeeded");
        assert_eq!(p.log[1].text, "state: running (attempt 1)");
        p.apply(3, "end", r#"{"state":"succeeded","error":null}"#, "b1");
        assert_eq!(p.state, "succeeded");
    }

    fn build(state: &str) -> Build {
        serde_json::from_value(serde_json::json!({
            "id": "b1", "team": "default", "state": state, "name": "kiln",
            "formats": ["kernel+initrd"], "arch": "amd64", "created_by": "admin",
            "spec_digest": "00", "attempts": 0, "error": null,
            "created_at": "2026-01-01T00:00:00Z", "started_at": null, "finished_at": null,
        }))
        .unwrap()
    }

    #[test]
    fn trust_comes_from_the_builds_record() {
        let mut p = Progress::new(&build("running"));
        p.apply(
            1,
            "image",
            r#"{"reference":"org/a:1","digest":"sha256:aa"}"#,
            "b1",
        );
        p.apply(
            2,
            "image",
            r#"{"reference":"other/b:1","digest":"sha256:bb"}"#,
            "b1",
        );
        assert_eq!(p.trust_of(&p.images[0]), None, "not checked yet");
        let mut done = build("succeeded");
        done.content_trust = Some(ContentTrust {
            disabled: false,
            verified: vec![super::super::api::VerifiedImage {
                image: "org/a:1".into(),
                digest: "sha256:aa".into(),
                key_fingerprint: "sha256:k".into(),
                trust_root: "org".into(),
            }],
        });
        p.refresh(&done);
        let a = p.trust_of(&p.images[0]).unwrap();
        assert_eq!(a.status, "verified");
        assert_eq!(a.detail.as_deref(), Some("key sha256:k of `org`"));
        assert_eq!(p.trust_of(&p.images[1]).unwrap().status, "not required");
        done.content_trust = Some(ContentTrust {
            disabled: true,
            verified: vec![],
        });
        p.refresh(&done);
        assert_eq!(p.trust_of(&p.images[1]).unwrap().status, "disabled");
    }

    #[test]
    fn a_successful_build_from_its_events() {
        let mut p = Progress::new(&build("queued"));
        assert_eq!(p.percent(), 0);
        p.apply(1, "state", r#"{"state":"queued"}"#, "b1");
        p.apply(2, "state", r#"{"state":"running","attempt":1}"#, "b1");
        assert_eq!(p.percent(), 10);
        p.apply(3, "plan", r#"{"images":["r/a:1","r/b:1"]}"#, "b1");
        p.apply(
            4,
            "image",
            r#"{"reference":"r/a:1","digest":"sha256:aa","cached":true}"#,
            "b1",
        );
        assert_eq!(p.percent(), 30);
        p.apply(5, "image", r#"{"reference":"r/b:1","digest":"sha256:bb","trust":{"status":"verified","detail":"sha256:k"}}"#, "b1");
        p.apply(6, "log", r#"{"message":"writing kernel+initrd"}"#, "b1");
        assert_eq!(p.percent(), 50);
        p.apply(
            7,
            "artifact",
            r#"{"name":"kiln-initrd.img","size":10,"sha256":"ab","media_type":"application/gzip"}"#,
            "b1",
        );
        assert_eq!(p.percent(), 95);
        p.apply(
            8,
            "end",
            r#"{"state":"succeeded","error":null,"seconds":1.25}"#,
            "b1",
        );
        assert!(p.ended());
        assert_eq!(p.percent(), 100);
        assert_eq!(p.state, "succeeded");
        assert_eq!(p.images.len(), 2);
        assert!(p.images[0].cached);
        assert_eq!(p.images[1].trust.as_ref().unwrap().status, "verified");
        assert_eq!(
            p.artifacts[0].url,
            "/api/v1/builds/b1/artifacts/kiln-initrd.img"
        );
        assert_eq!(p.log.last().unwrap().text, "succeeded in 1.3 s");
    }

    #[test]
    fn repeated_events_after_a_reconnect_are_ignored() {
        let mut p = Progress::new(&build("running"));
        p.apply(1, "log", r#"{"message":"one"}"#, "b1");
        p.apply(2, "log", r#"{"message":"two"}"#, "b1");
        p.apply(2, "log", r#"{"message":"two"}"#, "b1");
        p.apply(1, "log", r#"{"message":"one"}"#, "b1");
        assert_eq!(p.log.len(), 2);
    }

    #[test]
    fn failures_and_unknown_events_are_kept_as_text() {
        let mut p = Progress::new(&build("running"));
        p.apply(1, "mystery", "{\"x\":1}", "b1");
        p.apply(
            2,
            "end",
            r#"{"state":"failed","error":"no such image"}"#,
            "b1",
        );
        assert_eq!(p.log[0].text, "mystery: {\"x\":1}");
        assert_eq!(p.error.as_deref(), Some("no such image"));
        assert_eq!(p.log[1].text, "failed: no such image");
    }
}
