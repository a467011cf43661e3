//! Specs to start from. Each must validate without errors (a test checks),
//! so a new user starts from something that builds.

pub struct Template {
    pub id: &'static str,
    pub title: &'static str,
    pub text: &'static str,
}

pub const TEMPLATES: [Template; 4] = [
    Template {
        id: "minimal",
        title: "Minimal: kernel, init and a shell on the console",
        text: "\
kernel:
  image: linuxkit/kernel:6.6.71
  cmdline: \"console=ttyS0\"
init:
  - linuxkit/init:v1.2.0
  - linuxkit/runc:v1.2.0
  - linuxkit/containerd:v1.2.0
onboot:
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1.2.0
    command: [\"/sbin/dhcpcd\", \"--nobackground\", \"-f\", \"/dhcpcd.conf\", \"-1\"]
",
    },
    Template {
        id: "getty",
        title: "getty: a login prompt on the serial console",
        text: "\
kernel:
  image: linuxkit/kernel:6.6.71
  cmdline: \"console=tty0 console=ttyS0\"
init:
  - linuxkit/init:v1.2.0
  - linuxkit/runc:v1.2.0
  - linuxkit/containerd:v1.2.0
  - linuxkit/ca-certificates:v1.2.0
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1.2.0
services:
  - name: getty
    image: linuxkit/getty:v1.2.0
    env:
      - INSECURE=true
files:
  - path: etc/getty.shadow
    # a root password would go here; INSECURE=true logs in without one
    contents: \"\"
    mode: \"0600\"
",
    },
    Template {
        id: "sshd",
        title: "sshd: network, an SSH server and your public key",
        text: "\
kernel:
  image: linuxkit/kernel:6.6.71
  cmdline: \"console=ttyS0\"
init:
  - linuxkit/init:v1.2.0
  - linuxkit/runc:v1.2.0
  - linuxkit/containerd:v1.2.0
  - linuxkit/ca-certificates:v1.2.0
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1.2.0
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1.2.0
    command: [\"/sbin/dhcpcd\", \"--nobackground\", \"-f\", \"/dhcpcd.conf\", \"-1\"]
services:
  - name: rngd
    image: linuxkit/rngd:v1.2.0
  - name: sshd
    image: linuxkit/sshd:v1.2.0
    capabilities:
      - CAP_NET_BIND_SERVICE
      - CAP_SYS_CHROOT
      - CAP_SETUID
      - CAP_SETGID
      - CAP_CHOWN
      - CAP_AUDIT_WRITE
    binds:
      - /root/.ssh:/root/.ssh
      - /etc/resolv.conf:/etc/resolv.conf
files:
  - path: root/.ssh/authorized_keys
    contents: \"ssh-ed25519 AAAA... you@example\"
    mode: \"0600\"
",
    },
    Template {
        id: "signed-org",
        title: "Signed org: every linuxkit image must carry a trusted signature",
        text: "\
# With `trust`, kiln refuses to build unless each image of the listed orgs
# has a valid cosign signature from a key in the team's trust policy (the
# Team page shows it). The spec only names orgs; it never supplies keys.
kernel:
  image: linuxkit/kernel:6.6.71
  cmdline: \"console=ttyS0\"
init:
  - linuxkit/init:v1.2.0
  - linuxkit/runc:v1.2.0
  - linuxkit/containerd:v1.2.0
services:
  - name: getty
    image: linuxkit/getty:v1.2.0
    env:
      - INSECURE=true
trust:
  org:
    - linuxkit
",
    },
];

pub fn by_id(id: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_valid_spec() {
        for t in &TEMPLATES {
            let v = kiln_shared::validate(t.text);
            assert!(!v.has_errors(), "{}: {:?}", t.id, v.diagnostics);
            assert!(v.spec.is_some(), "{}", t.id);
        }
        assert!(by_id("sshd").is_some());
        assert!(by_id("nope").is_none());
    }

    #[test]
    fn the_signed_org_template_uses_trust() {
        let spec = kiln_shared::validate(by_id("signed-org").unwrap().text)
            .spec
            .unwrap();
        assert!(spec.trust.is_some());
    }
}
