//! Which of a container's networks it is reached on, and at which
//! address (registrator's most reported trouble: a container on several
//! networks, or on a user network without published ports, registered at
//! an address nobody reaches). Pure, deterministic, in this order:
//!
//! 1. the container's own choice, `SERVICE_NETWORK` (env or label) or the
//!    label `shoal.network`; a network it is not on is refused with a note
//!    (never silently another one);
//! 2. the agent's default network (`--network`), when the container is on it;
//! 3. the first network (by name) it shares with the proxy container;
//! 4. otherwise the default bridge, else the first network by name — not
//!    a choice: only `--internal` registers such an address.
//!
//! A choice of 1–3 registers the container at its address on that network
//! with its exposed ports, published or not. The address is the network's
//! IPv4 one, or its IPv6 one when the network has no IPv4 address or IPv6
//! is preferred (`--prefer-ipv6`). Every address is also published as a
//! tagged address: `lan_ipv4`/`lan_ipv6` on the chosen network, and one per
//! network name.

use super::container::{Container, Network};
use super::convention::Settings;
use std::collections::BTreeMap;

/// The label a container names its network with (besides `SERVICE_NETWORK`).
pub const NETWORK_LABEL: &str = "shoal.network";

/// Where a container is reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// The address on the chosen (or fallback) network; None when there is
    /// none (host networking, or a chosen network the container is not on).
    pub address: Option<String>,
    /// Whether a network was chosen (steps 1–3): its address then wins over
    /// published ports.
    pub chosen: bool,
    /// Tagged addresses without their port (`lan_ipv4`, `lan_ipv6`, network names).
    pub tagged: BTreeMap<String, String>,
    /// Worth a log line: why an address was refused, or a pick among several.
    pub note: Option<String>,
}

/// The network's address: IPv4, or IPv6 when preferred or alone.
fn address(n: &Network, prefer_ipv6: bool) -> Option<String> {
    let (v4, v6) = (&n.ip_address, &n.global_ipv6_address);
    let pick = match (v4.is_empty(), v6.is_empty()) {
        (false, false) if prefer_ipv6 => v6,
        (false, _) => v4,
        (true, false) => v6,
        (true, true) => return None,
    };
    Some(pick.clone())
}

/// Which network `c` is reached on under `s`; `wanted` is the container's
/// `SERVICE_NETWORK` (env or label), if any. See the module doc.
pub fn reach(c: &Container, wanted: Option<&str>, s: &Settings) -> Reach {
    let nets = &c.network_settings.networks;
    let wanted = wanted
        .filter(|w| !w.is_empty())
        .or(c.config.labels.get(NETWORK_LABEL).map(String::as_str))
        .filter(|w| !w.is_empty());
    let on = |name: &str| nets.get(name).and_then(|n| address(n, s.prefer_ipv6));
    let mut r = Reach {
        tagged: tagged(c, wanted.or(s.network.as_deref()), s),
        ..Default::default()
    };
    if let Some(w) = wanted {
        match on(w) {
            Some(a) => {
                r.address = Some(a);
                r.chosen = true;
            }
            None => {
                let names: Vec<&str> = nets.keys().map(String::as_str).collect();
                r.note = Some(format!(
                    "network {w:?} (SERVICE_NETWORK / {NETWORK_LABEL}) is not one this container has an address on ({}): only published ports are registered",
                    names.join(", ")
                ));
            }
        }
        return r;
    }
    let choices = s
        .network
        .iter()
        .chain(s.proxy_networks.iter())
        .map(String::as_str);
    for name in choices {
        if let Some(a) = on(name) {
            r.address = Some(a);
            r.chosen = true;
            r.tagged = tagged(c, Some(name), s);
            return r;
        }
    }
    // No choice: the default bridge's (its legacy field), else the first by name.
    let legacy = &c.network_settings.ip_address;
    r.address = if !legacy.is_empty() && (nets.is_empty() || nets.contains_key("bridge")) {
        Some(legacy.clone())
    } else {
        nets.values().find_map(|n| address(n, s.prefer_ipv6))
    };
    let with_address = nets
        .values()
        .filter(|n| address(n, false).is_some())
        .count();
    if with_address > 1 && s.internal {
        r.note = Some(format!(
            "on {with_address} networks and none chosen: registered at {} (the first by name); set SERVICE_NETWORK or the label {NETWORK_LABEL}, or the agent's --network",
            r.address.as_deref().unwrap_or("")
        ));
    }
    r
}

/// `lan_ipv4`/`lan_ipv6` of `primary` (else the first network with an
/// address) and one entry per network name.
fn tagged(c: &Container, primary: Option<&str>, s: &Settings) -> BTreeMap<String, String> {
    let nets = &c.network_settings.networks;
    let mut out = BTreeMap::new();
    for (name, n) in nets {
        if let Some(a) = address(n, s.prefer_ipv6) {
            out.insert(name.clone(), a);
        }
    }
    let main = primary
        .and_then(|p| nets.get(p))
        .or_else(|| nets.values().find(|n| address(n, false).is_some()));
    if let Some(n) = main {
        if !n.ip_address.is_empty() {
            out.insert("lan_ipv4".into(), n.ip_address.clone());
        }
        if !n.global_ipv6_address.is_empty() {
            out.insert("lan_ipv6".into(), n.global_ipv6_address.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container on `nets` (name, IPv4, IPv6), with `labels`.
    fn on(nets: &[(&str, &str, &str)], labels: &[(&str, &str)]) -> Container {
        let mut c = Container::default();
        for (name, v4, v6) in nets {
            c.network_settings.networks.insert(
                name.to_string(),
                Network {
                    ip_address: v4.to_string(),
                    global_ipv6_address: v6.to_string(),
                },
            );
        }
        c.config.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c
    }

    fn settings(network: Option<&str>, proxy: &[&str], prefer_ipv6: bool) -> Settings {
        Settings {
            network: network.map(str::to_string),
            proxy_networks: proxy.iter().map(|p| p.to_string()).collect(),
            prefer_ipv6,
            ..Default::default()
        }
    }

    #[test]
    fn the_network_is_chosen_in_order_and_never_silently_wrong() {
        let two = [("front", "10.1.0.5", ""), ("back", "10.2.0.5", "fd00::5")];
        let none = settings(None, &[], false);
        // (what, container, SERVICE_NETWORK, settings, address, chosen, note contains)
        type Case<'a> = (
            &'a str,
            Container,
            Option<&'a str>,
            Settings,
            Option<&'a str>,
            bool,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "SERVICE_NETWORK",
                on(&two, &[]),
                Some("front"),
                settings(Some("back"), &["back"], false),
                Some("10.1.0.5"),
                true,
                "",
            ),
            (
                "label",
                on(&two, &[(NETWORK_LABEL, "back")]),
                None,
                none.clone(),
                Some("10.2.0.5"),
                true,
                "",
            ),
            (
                "env wins over the label",
                on(&two, &[(NETWORK_LABEL, "back")]),
                Some("front"),
                none.clone(),
                Some("10.1.0.5"),
                true,
                "",
            ),
            (
                "a network it is not on: refused",
                on(&two, &[]),
                Some("other"),
                settings(Some("back"), &[], false),
                None,
                false,
                "\"other\"",
            ),
            (
                "agent default",
                on(&two, &[]),
                None,
                settings(Some("back"), &["front"], false),
                Some("10.2.0.5"),
                true,
                "",
            ),
            (
                "agent default it is not on: the proxy's",
                on(&two, &[]),
                None,
                settings(Some("x"), &["a", "front"], false),
                Some("10.1.0.5"),
                true,
                "",
            ),
            (
                "shared with the proxy",
                on(&two, &[]),
                None,
                settings(None, &["back"], false),
                Some("10.2.0.5"),
                true,
                "",
            ),
            (
                "no choice: first by name, not chosen",
                on(&two, &[]),
                None,
                none.clone(),
                Some("10.2.0.5"),
                false,
                "",
            ),
            (
                "IPv6 preferred",
                on(&two, &[]),
                Some("back"),
                settings(None, &[], true),
                Some("fd00::5"),
                true,
                "",
            ),
            (
                "IPv6 only",
                on(&[("v6", "", "fd00::9")], &[]),
                Some("v6"),
                none.clone(),
                Some("fd00::9"),
                true,
                "",
            ),
            (
                "host networking: no address",
                on(&[("host", "", "")], &[]),
                None,
                none.clone(),
                None,
                false,
                "",
            ),
        ];
        for (what, c, wanted, s, addr, chosen, note) in cases {
            let r = reach(&c, wanted, &s);
            assert_eq!(r.address.as_deref(), addr, "{what}");
            assert_eq!(r.chosen, chosen, "{what}");
            if !note.is_empty() {
                assert!(
                    r.note.as_deref().unwrap_or("").contains(note),
                    "{what}: {:?}",
                    r.note
                );
            }
        }
    }

    #[test]
    fn every_address_is_tagged() {
        let c = on(
            &[("front", "10.1.0.5", ""), ("back", "10.2.0.5", "fd00::5")],
            &[],
        );
        let r = reach(&c, Some("back"), &Settings::default());
        let want: BTreeMap<String, String> = [
            ("back", "10.2.0.5"),
            ("front", "10.1.0.5"),
            ("lan_ipv4", "10.2.0.5"),
            ("lan_ipv6", "fd00::5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(r.tagged, want);
        // Without a choice, lan_* are the first network's (by name).
        let r = reach(&c, None, &Settings::default());
        assert_eq!(r.tagged["lan_ipv4"], "10.2.0.5");
    }
}
