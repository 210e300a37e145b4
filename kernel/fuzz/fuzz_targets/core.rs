//! The core (the object model the kernel runs) driven by decoded and
//! garbage system calls from several tasks; its invariants are checked
//! after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pandagen_fuzz::{Step, World, MAX_STEPS};

fuzz_target!(|steps: Vec<Step>| {
    let mut world = World::new();
    for step in steps.iter().take(MAX_STEPS) {
        world.run(step);
    }
});
