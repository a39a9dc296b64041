//! placeholder
use super::Prepared;
use super::guest::Guest;
use crate::error::Result;

pub struct Operation {
    pub name: &'static str,
}

pub fn apply(g: &mut Guest, ops: &[&'static Operation], customize: &Prepared) -> Result<()> {
    let _ = (ops,);
    customize.apply(g)
}
