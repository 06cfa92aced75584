//! What a token needs to register or deregister, as Consul vets it: one
//! set of rules for the catalog and the agent endpoints alike.
//!
//! - an instance: `service:write` on its name (and on the name of the
//!   instance it replaces, if that was another service);
//! - the node: `node:write` when the registration changes it (a new node,
//!   or another address, ID or metadata);
//! - a check: `service:write` on its instance's service, or `node:write`
//!   for a node check.

use crate::acl::Access;
use crate::error::ApiResult;
use shoal_catalog::acl::Resource;
use shoal_catalog::{Node, Registration, State};

fn changes_node(old: Option<&Node>, new: &Node) -> bool {
    match old {
        None => true,
        Some(o) => {
            o.address != new.address
                || (!new.id.is_empty() && o.id != new.id)
                || o.meta != new.meta
                || o.tagged_addresses != new.tagged_addresses
        }
    }
}

/// The service an instance ID on `node` belongs to: the one this
/// registration brings, or the one in the catalog.
fn service_of<'a>(
    st: &'a State,
    reg: Option<&'a Registration>,
    node: &str,
    id: &str,
) -> Option<String> {
    if let Some(svc) = reg.and_then(|r| r.service.as_ref()) {
        if svc.id == id {
            return Some(svc.name.clone());
        }
    }
    st.service(node, id).map(|s| s.name.clone())
}

/// 403 unless `access` may make `reg` in `st`.
pub(crate) fn vet_registration(access: &Access, st: &State, reg: &Registration) -> ApiResult<()> {
    if !access.enforced {
        return Ok(());
    }
    let node = &reg.node.name;
    let old_node = st.node(node);
    if !(reg.skip_node_update && old_node.is_some()) && changes_node(old_node.as_deref(), &reg.node)
    {
        access.need_write(Resource::Node, node)?;
    }
    if let Some(svc) = &reg.service {
        access.need_write(Resource::Service, &svc.name)?;
        if let Some(old) = st.service(node, &svc.id) {
            if old.name != svc.name {
                access.need_write(Resource::Service, &old.name)?;
            }
        }
    }
    for check in &reg.checks {
        let service_id = if check.service_id.is_empty() {
            None
        } else {
            Some(check.service_id.as_str())
        };
        match service_id.and_then(|id| service_of(st, Some(reg), node, id)) {
            Some(name) => access.need_write(Resource::Service, &name)?,
            None => access.need_write(Resource::Node, node)?,
        }
    }
    Ok(())
}

/// 403 unless `access` may remove the instance `service_id`, the check
/// `check_id`, or (both empty) the whole `node`. What does not exist
/// needs nothing: removing it changes nothing and tells nothing.
pub(crate) fn vet_deregistration(
    access: &Access,
    st: &State,
    node: &str,
    service_id: &str,
    check_id: &str,
) -> ApiResult<()> {
    if !access.enforced {
        return Ok(());
    }
    if !service_id.is_empty() {
        if let Some(name) = service_of(st, None, node, service_id) {
            access.need_write(Resource::Service, &name)?;
        }
        return Ok(());
    }
    if !check_id.is_empty() {
        if let Some(check) = st.check(node, check_id) {
            match service_of(st, None, node, &check.service_id) {
                Some(name) if !check.service_id.is_empty() => {
                    access.need_write(Resource::Service, &name)?
                }
                _ => access.need_write(Resource::Node, node)?,
            }
        }
        return Ok(());
    }
    access.need_write(Resource::Node, node)
}
