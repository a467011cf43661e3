//! The API's largest answers read with [`super::json`] instead of serde's
//! derived readers (see there why). Each reader takes exactly what the
//! serde derive on the same type takes; the tests hold them to that.

use super::api::{
    Artifact, Build, BuildList, ContentTrust, CreatedToken, FormatInfo, FormatList, Me, Member,
    MemberList, Membership, Policy, Role, Token, TokenList, VerifiedImage,
};
use super::json::{Error, FromJson, Json};
use super::pcrs::{ArtifactName, Digests, Event, Manifest, Model, Pcr};
use super::releases::{Check, Referrer, Release, ReleaseList, TeamKey, TeamKeyList, VerifyReport};

impl FromJson for Artifact {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Artifact {
            name: j.str("name")?,
            size: j.u64("size")?,
            sha256: j.str("sha256")?,
            media_type: j.str("media_type")?,
            url: j.str("url")?,
        })
    }
}

impl FromJson for VerifiedImage {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(VerifiedImage {
            image: j.str("image")?,
            digest: j.str("digest")?,
            key_fingerprint: j.str("key_fingerprint")?,
            trust_root: j.str("trust_root")?,
        })
    }
}

impl FromJson for ContentTrust {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(ContentTrust {
            disabled: j.bool("disabled")?,
            verified: j.list("verified")?,
        })
    }
}

impl FromJson for Build {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Build {
            id: j.str("id")?,
            team: j.str("team")?,
            state: j.str("state")?,
            name: j.str("name")?,
            formats: j.list("formats")?,
            arch: j.str("arch")?,
            created_by: j.str("created_by")?,
            spec_digest: j.str("spec_digest")?,
            attempts: j.i64("attempts")?,
            error: j.opt_str("error")?,
            created_at: j.str("created_at")?,
            started_at: j.opt_str("started_at")?,
            finished_at: j.opt_str("finished_at")?,
            content_trust: j.opt("content_trust")?,
            artifacts: j.opt_list("artifacts")?,
        })
    }
}

impl FromJson for BuildList {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(BuildList {
            builds: j.list("builds")?,
        })
    }
}

impl FromJson for Referrer {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Referrer {
            kind: j.str("kind")?,
            digest: j.str("digest")?,
        })
    }
}

impl FromJson for Release {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Release {
            id: j.str("id")?,
            team: j.str("team")?,
            build_id: j.str("build_id")?,
            name: j.str("name")?,
            reference: j.str("reference")?,
            repository: j.str("repository")?,
            tag: j.str("tag")?,
            digest: j.str("digest")?,
            key_fingerprint: j.str("key_fingerprint")?,
            referrers: j.opt_list("referrers")?,
            published_by: j.str("published_by")?,
            published_at: j.str("published_at")?,
            verification: j.str("verification")?,
            verified_at: j.opt_str("verified_at")?,
            verify_commands: j.opt_list("verify_commands")?,
        })
    }
}

impl FromJson for ReleaseList {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(ReleaseList {
            releases: j.list("releases")?,
        })
    }
}

impl FromJson for Check {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Check {
            what: j.str("what")?,
            ok: j.bool("ok")?,
            detail: j.str("detail")?,
        })
    }
}

impl FromJson for VerifyReport {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(VerifyReport {
            release: Release::from_json(j.get("release").ok_or("missing field `release`")?)?,
            ok: j.bool("ok")?,
            checks: j.list("checks")?,
        })
    }
}

impl FromJson for TeamKey {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(TeamKey {
            fingerprint: j.str("fingerprint")?,
            pem: j.str("pem")?,
        })
    }
}

impl FromJson for TeamKeyList {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(TeamKeyList {
            keys: j.list("keys")?,
        })
    }
}

fn digests(j: &Json, key: &str) -> Result<Digests, Error> {
    match j.get(key) {
        Some(Json::Obj(members)) => members
            .iter()
            .map(|(bank, v)| {
                v.as_str()
                    .map(|hex| (bank.clone(), hex.to_owned()))
                    .ok_or_else(|| format!("`{key}.{bank}` is not a string"))
            })
            .collect(),
        _ => Err(format!("`{key}` is not an object")),
    }
}

fn member<T: FromJson>(j: &Json, key: &str) -> Result<T, Error> {
    T::from_json(j.get(key).ok_or_else(|| format!("missing field `{key}`"))?)
}

impl FromJson for ArtifactName {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(ArtifactName {
            name: j.str("name")?,
            format: j.str("format")?,
        })
    }
}

impl FromJson for Model {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Model {
            name: j.str("name")?,
        })
    }
}

impl FromJson for Event {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Event {
            kind: j.str("type")?,
            digests: digests(j, "digests")?,
            description: j.str("description")?,
            basis: j.str("basis")?,
        })
    }
}

impl FromJson for Pcr {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Pcr {
            pcr: u32::try_from(j.u64("pcr")?).map_err(|_| "`pcr` is out of range")?,
            basis: j.str("basis")?,
            values: digests(j, "values")?,
            events: j.list("events")?,
            note: j.str("note")?,
        })
    }
}

impl FromJson for Manifest {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Manifest {
            artifact: member(j, "artifact")?,
            reference_model: member(j, "referenceModel")?,
            banks: j.list("banks")?,
            pcrs: j.list("pcrs")?,
        })
    }
}

impl FromJson for Role {
    fn from_json(j: &Json) -> Result<Self, Error> {
        j.as_str()
            .and_then(Role::parse)
            .ok_or_else(|| "expected a role".to_owned())
    }
}

impl FromJson for Membership {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Membership {
            team: j.str("team")?,
            role: member(j, "role")?,
        })
    }
}

impl FromJson for Me {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Me {
            user: j.str("user")?,
            server_admin: j.bool("server_admin")?,
            teams: j.list("teams")?,
            csrf_token: j.opt_str("csrf_token")?,
        })
    }
}

impl FromJson for FormatInfo {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(FormatInfo {
            name: j.str("name")?,
            files: j.list("files")?,
        })
    }
}

impl FromJson for FormatList {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(FormatList {
            formats: j.list("formats")?,
            default: j.list("default")?,
        })
    }
}

impl FromJson for Member {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Member {
            user: j.str("user")?,
            role: member(j, "role")?,
        })
    }
}

impl FromJson for MemberList {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(MemberList {
            members: j.list("members")?,
        })
    }
}

impl FromJson for Token {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(Token {
            id: j.str("id")?,
            team: j.str("team")?,
            name: j.str("name")?,
            role: member(j, "role")?,
            user: j.str("user")?,
            created_at: j.str("created_at")?,
            revoked_at: j.opt_str("revoked_at")?,
        })
    }
}

impl FromJson for TokenList {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(TokenList {
            tokens: j.list("tokens")?,
        })
    }
}

impl FromJson for CreatedToken {
    fn from_json(j: &Json) -> Result<Self, Error> {
        Ok(CreatedToken {
            name: j.str("name")?,
            secret: j.str("secret")?,
        })
    }
}

impl FromJson for Policy {
    fn from_json(j: &Json) -> Result<Self, Error> {
        let mut policy = String::new();
        j.get("policy")
            .ok_or("missing field `policy`")?
            .write(&mut policy);
        Ok(Policy {
            policy,
            updated_at: j.opt_str("updated_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::model::json::from_str;

    /// Both readers agree on `text`: the same value, or both refuse it.
    fn agree<T: FromJson + DeserializeOwned + PartialEq + Debug>(text: &str) -> Option<T> {
        let ours = from_str::<T>(text);
        let theirs = serde_json::from_str::<T>(text);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                Some(a)
            }
            (Err(_), Err(_)) => None,
            (a, b) => panic!("{text}: ours {a:?}, serde {b:?}"),
        }
    }

    const BUILD: &str = r#"{"id":"b1","team":"default","state":"succeeded","name":"os",
        "formats":["uki","tar"],"arch":"amd64","created_by":"dev","spec_digest":"sha256:00",
        "attempts":1,"error":null,"created_at":"2026-01-01T00:00:00Z",
        "started_at":"2026-01-01T00:00:01Z","finished_at":null,"extra":{"ignored":[1,2]},
        "content_trust":{"disabled":false,"verified":[{"image":"r/i:1","digest":"sha256:11",
        "key_fingerprint":"sha256:22","trust_root":"org"}]},
        "artifacts":[{"name":"os.efi","size":10,"sha256":"33","media_type":"application/x",
        "url":"/api/v1/builds/b1/artifacts/os.efi"}]}"#;

    #[test]
    fn builds_read_as_serde_reads_them() {
        let b: Build = agree(BUILD).unwrap();
        assert_eq!(b.artifacts[0].size, 10);
        assert!(agree::<BuildList>(&format!(r#"{{"builds":[{BUILD},{BUILD}]}}"#)).is_some());
        let bare = BUILD
            .replace(r#""content_trust""#, r#""ct""#)
            .replace(r#""artifacts""#, r#""arts""#);
        let b: Build = agree(&bare).unwrap();
        assert!(b.artifacts.is_empty() && b.content_trust.is_none());
        for broken in [
            BUILD.replace(r#""attempts":1"#, r#""attempts":"1""#),
            BUILD.replace(r#""id":"b1","#, ""),
            BUILD.replace(r#""size":10"#, r#""size":-1"#),
            BUILD.replace(r#""formats":["uki","tar"]"#, r#""formats":"uki""#),
            BUILD.replace(r#""error":null"#, r#""error":5"#),
        ] {
            assert!(agree::<Build>(&broken).is_none(), "{broken}");
        }
    }

    const RELEASE: &str = r#"{"id":"r1","team":"default","build_id":"b1","name":"os",
        "reference":"h/os:1","repository":"h/os","tag":"1","digest":"sha256:00","size":9,
        "key_fingerprint":"sha256:11","referrers":[{"kind":"SBOM","digest":"sha256:22"}],
        "published_by":"rm","published_at":"2026-01-01T00:00:00Z","verification":"verified",
        "verified_at":null,"verify_commands":["kiln verify-release --key team.pub h/os:1"]}"#;

    #[test]
    fn releases_read_as_serde_reads_them() {
        agree::<Release>(RELEASE).unwrap();
        agree::<ReleaseList>(&format!(r#"{{"releases":[{RELEASE}]}}"#)).unwrap();
        let report: VerifyReport = agree(&format!(
            r#"{{"release":{RELEASE},"ok":true,"checks":[{{"what":"signature","ok":true,"detail":"d"}}]}}"#
        ))
        .unwrap();
        assert_eq!(report.checks[0].what, "signature");
        agree::<TeamKeyList>(
            r#"{"keys":[{"fingerprint":"sha256:1","pem":"P","algorithm":"ecdsa-p256","source":"x"}]}"#,
        )
        .unwrap();
        assert!(agree::<Release>(&RELEASE.replace(r#""tag":"1","#, "")).is_none());
        assert!(agree::<VerifyReport>(r#"{"ok":true,"checks":[]}"#).is_none());
    }

    #[test]
    fn accounts_and_teams_read_as_serde_reads_them() {
        let me: Me = agree(
            r#"{"user":"u","server_admin":false,"teams":[{"team":"t","role":"publisher"}],"csrf_token":null}"#,
        )
        .unwrap();
        assert_eq!(me.teams[0].role, Role::Publisher);
        assert!(agree::<Me>(
            r#"{"user":"u","server_admin":false,"teams":[{"team":"t","role":"boss"}]}"#
        )
        .is_none());
        agree::<FormatList>(
            r#"{"formats":[{"name":"tar","files":["NAME.tar"]}],"default":["tar"]}"#,
        )
        .unwrap();
        agree::<MemberList>(r#"{"members":[{"user":"u","role":"viewer"}]}"#).unwrap();
        agree::<TokenList>(
            r#"{"tokens":[{"id":"1","team":"t","name":"ci","role":"builder","user":"u",
            "created_at":"2026-01-01T00:00:00Z","revoked_at":null,"last_used_at":null}]}"#,
        )
        .unwrap();
        agree::<CreatedToken>(r#"{"id":"1","name":"ci","secret":"s3"}"#).unwrap();
        let p = crate::model::json::from_str::<Policy>(
            r#"{"policy":{"require":["o"],"org":[{"name":"o","public_keys":["K\n"]}],"n":1.5},"updated_at":null}"#,
        )
        .unwrap();
        assert_eq!(
            p.policy,
            r#"{"require":["o"],"org":[{"name":"o","public_keys":["K\n"]}],"n":1.5}"#
        );
        let again: serde_json::Value = serde_json::from_str(&p.policy).unwrap();
        assert_eq!(again["org"][0]["public_keys"][0], "K\n");
    }

    #[test]
    fn manifests_read_as_serde_reads_them() {
        let text = r#"{"manifestVersion":1,
          "artifact":{"name":"os.efi","format":"uki","size":3,"digests":{"sha256":"aa"}},
          "referenceModel":{"name":"qemu-q35-ovmf-nodefaults","secureBoot":false,"assumptions":[]},
          "banks":["sha1","sha256"],
          "pcrs":[{"pcr":11,"basis":"artifact","values":{"sha1":"0b","sha256":"bb"},
            "events":[{"pcr":11,"type":"EV_IPL","digests":{"sha1":"c1","sha256":"d1"},
              "description":".linux","basis":"artifact"}],"note":"n"}],
          "systemdMeasure":{"sha256":[{"pcr":11,"hash":"bb"}]}}"#;
        let m: Manifest = agree(text).unwrap();
        assert_eq!(m.pcr(11).unwrap().value("sha1"), Some("0b"));
        assert!(agree::<Manifest>(&text.replace(r#""sha1":"0b""#, r#""sha1":11"#)).is_none());
        assert!(
            agree::<Manifest>(&text.replace(r#""pcr":11,"basis""#, r#""pcr":-1,"basis""#))
                .is_none()
        );
    }
}
