//! The trust policy a service build runs under: the server's global policy
//! (a TOML file named by `trust_policy`) together with the team's stored
//! policy (the same document as JSON). A team may add roots and
//! requirements but may not touch what the server configures: a team root
//! overlapping a server root (either covering the other) is refused, so a
//! team cannot substitute its own key for an org the server pins.

use std::path::Path;

use kiln_signer::policy::TrustPolicy;

/// Keys of an `org` entry that name files on the server's disk: a team
/// policy may not make the server read its files.
const FILE_KEYS: &[&str] = &["keys", "trusted_root"];

/// Parses a team's policy document (JSON with the TOML policy's shape:
/// `require`, `allow_disable_content_trust`, `org` entries with inline
/// `public_keys`).
pub fn team_policy(
    doc: &serde_json::Map<String, serde_json::Value>,
) -> Result<TrustPolicy, String> {
    if let Some(orgs) = doc.get("org").and_then(|o| o.as_array()) {
        for (i, org) in orgs.iter().enumerate() {
            for key in FILE_KEYS {
                if org.get(key).is_some() {
                    return Err(format!(
                        "org[{i}].{key}: a team policy cannot name files on the server; give keys inline in `public_keys`"
                    ));
                }
            }
        }
    }
    let value: toml::Value = serde_json::from_value(serde_json::Value::Object(doc.clone()))
        .map_err(|e| format!("the policy cannot be expressed as a trust policy: {e}"))?;
    let text = toml::to_string(&value)
        .map_err(|e| format!("the policy cannot be expressed as a trust policy: {e}"))?;
    TrustPolicy::from_toml(&text, Path::new("/nonexistent")).map_err(|e| e.to_string())
}

fn overlaps(a: &str, b: &str) -> bool {
    let covers = |p: &str, n: &str| n == p || n.starts_with(&format!("{p}/"));
    covers(a, b) || covers(b, a)
}

/// The policy a team's builds run under. Disabling content trust needs
/// every policy that is set to allow it.
pub fn combine(
    global: Option<&TrustPolicy>,
    team: Option<&TrustPolicy>,
) -> Result<TrustPolicy, String> {
    let (global, team) = match (global, team) {
        (None, None) => return Ok(TrustPolicy::empty()),
        (Some(g), None) => return Ok(g.clone()),
        (None, Some(t)) => return Ok(t.clone()),
        (Some(g), Some(t)) => (g, t),
    };
    let mut combined = global.clone();
    for root in &team.roots {
        if let Some(server) = global
            .roots
            .iter()
            .find(|s| overlaps(&s.prefix, &root.prefix))
        {
            return Err(format!(
                "the team's trust root `{}` overlaps the server's `{}`; only the server configures keys there",
                root.name, server.name
            ));
        }
        combined.roots.push(root.clone());
    }
    for r in &team.require {
        if !combined.require.contains(r) {
            combined.require.push(r.clone());
        }
    }
    combined.allow_disable_content_trust =
        global.allow_disable_content_trust && team.allow_disable_content_trust;
    Ok(combined)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1bfkcGMm0/TIt2vuMNaMK+tRLT5n\nO3V/yNdkVn/lEkF62KtzKYD+uBGhzIzUw0UG7wSTOV1mykxJciRvvJuuMQ==\n-----END PUBLIC KEY-----\n";

    fn doc(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn team_policies_parse_inline_keys_and_refuse_file_paths() {
        let p = team_policy(&doc(serde_json::json!({
            "require": ["acme"],
            "org": [{"name": "acme", "public_keys": [KEY]}],
        })))
        .unwrap();
        assert_eq!(p.require, ["docker.io/acme"]);
        assert_eq!(p.roots[0].keys.len(), 1);

        let e = team_policy(&doc(serde_json::json!({
            "org": [{"name": "acme", "keys": ["/etc/shadow"]}],
        })))
        .unwrap_err();
        assert!(e.contains("org[0].keys"), "{e}");
        let e = team_policy(&doc(serde_json::json!({"wat": 1}))).unwrap_err();
        assert!(e.contains("wat"), "{e}");
    }

    #[test]
    fn a_team_cannot_override_a_server_root_and_disabling_needs_both() {
        let server = team_policy(&doc(serde_json::json!({
            "allow_disable_content_trust": true,
            "org": [{"name": "linuxkit", "public_keys": [KEY]}],
        })))
        .unwrap();
        let sub = team_policy(&doc(serde_json::json!({
            "org": [{"name": "linuxkit/init", "public_keys": [KEY]}],
        })))
        .unwrap();
        let e = combine(Some(&server), Some(&sub)).unwrap_err();
        assert!(e.contains("linuxkit/init") && e.contains("overlaps"), "{e}");

        let other = team_policy(&doc(serde_json::json!({
            "require": ["acme"],
            "org": [{"name": "acme", "public_keys": [KEY]}],
        })))
        .unwrap();
        let c = combine(Some(&server), Some(&other)).unwrap();
        assert_eq!(c.roots.len(), 2);
        assert_eq!(c.require, ["docker.io/acme"]);
        assert!(!c.allow_disable_content_trust);
        assert!(
            combine(Some(&server), None)
                .unwrap()
                .allow_disable_content_trust
        );
        assert!(!combine(None, None).unwrap().allow_disable_content_trust);
    }
}
