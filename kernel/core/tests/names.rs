//! How kernel objects are named in logs, audit dumps and simulator traces:
//! the same object always prints the same way, and the slot generation is
//! part of a channel's name (a reused slot is a different channel).

mod common;

use common::*;
use pandagen_abi::Rights;
use pandagen_core::{CapId, ChannelRef, Mintable};

#[test]
fn capability_ids_print_as_cap_and_their_number() {
    assert_eq!(CapId::from_raw(7).to_string(), "cap#7");
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    let id = k.inspect(t, h).unwrap().id;
    assert_eq!(id.to_string(), format!("cap#{}", id.as_raw()));
}

#[test]
fn channels_print_with_their_slot_and_generation() {
    let r = ChannelRef::from_parts(3, 2);
    assert_eq!(format!("{r}"), "ch3g2");
    assert_eq!(format!("{r:?}"), "ch3g2");
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let first = k.create_channel(t, T0).unwrap();
    let old = k.channel_of(t, first, T0).unwrap();
    k.drop_cap(t, first, T0).unwrap();
    let second = k.create_channel(t, T0).unwrap();
    let new = k.channel_of(t, second, T0).unwrap();
    assert_ne!(
        old.to_string(),
        new.to_string(),
        "a reused slot prints anew"
    );
}
