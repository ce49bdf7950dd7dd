use super::*;

/// Calls per thread in the races below; Miri (which checks them for data races) runs some
/// thousand times slower.
const CALLS: usize = if cfg!(miri) { 100 } else { 20_000 };

fn leaked<T: Send + 'static>(s: Slots<T>) -> &'static Slots<T> {
    Box::leak(Box::new(s))
}

fn is_bad_handle<T>(r: Result<T>) -> bool {
    matches!(r, Err(Error::BadHandle(_)))
}

#[test]
fn stale_garbage_foreign_and_removed_tokens_are_refused() {
    let s: &Slots<u32> = leaked(Slots::new(HandleType::Cursor));
    let a = s.insert(7).unwrap();
    assert_eq!(s.with(a, |v| Ok(*v)).unwrap(), 7);
    s.with(a, |v| {
        *v += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(s.remove(a).unwrap(), 8);
    assert!(is_bad_handle(s.with(a, |v| Ok(*v))), "closed");
    assert!(is_bad_handle(s.remove(a)), "closed twice");
    let b = s.insert(9).unwrap();
    assert_eq!(a & 0xFFFF_FFFF, b & 0xFFFF_FFFF, "the freed slot is reused");
    assert_ne!(a, b, "with a new generation");
    assert!(is_bad_handle(s.with(a, |v| Ok(*v))), "stale after the slot's reuse");
    for garbage in [0, 1, 0xdead_beef, b + 1, b + (1 << 32), usize::MAX, b & !(0xFF << 56)] {
        assert!(is_bad_handle(s.with(garbage, |v| Ok(*v))), "{garbage:#x}");
    }
    // A token of another type with the same index and generation.
    let foreign = (b & !(0xFF << 56)) | (HandleType::Tree as usize) << 56;
    assert!(is_bad_handle(s.with(foreign, |v| Ok(*v))));
    assert!(is_bad_handle(s.remove(foreign)));
    // Indexes far past every slot made, in chunks never made.
    let far = (HandleType::Cursor as usize) << 56 | 1 << 32 | 0xFFFF_FFF0;
    assert!(is_bad_handle(s.with(far, |v| Ok(*v))));
    assert_eq!(s.with(b, |v| Ok(*v)).unwrap(), 9, "the live handle is untouched");
}

#[test]
fn handles_in_many_chunks_are_all_found() {
    let s: &Slots<u32> = leaked(Slots::new(HandleType::Cursor));
    let tokens: Vec<usize> = (0..1000).map(|v| s.insert(v).unwrap()).collect();
    for (v, t) in tokens.iter().enumerate() {
        assert_eq!(s.with(*t, |x| Ok(*x)).unwrap(), v as u32);
    }
    for t in tokens.iter().step_by(2) {
        s.remove(*t).unwrap();
    }
    for (v, t) in tokens.iter().enumerate() {
        assert_eq!(s.with(*t, |x| Ok(*x)).ok(), (v % 2 == 1).then_some(v as u32));
    }
}

#[test]
fn a_slot_at_its_last_generation_is_retired_and_old_tokens_never_revive() {
    let s: &Slots<u32> = leaked(Slots::starting_at(HandleType::Cursor, GENERATION_MAX - 3));
    let mut old = Vec::new();
    for v in 0..3 {
        let t = s.insert(v).unwrap();
        assert_eq!(t & 0xFFFF_FFFF, 1, "the freed slot is reused");
        assert_eq!(s.remove(t).unwrap(), v);
        old.push(t);
    }
    assert_eq!((old[2] >> 32) & 0xFF_FFFF, GENERATION_MAX as usize);
    let live: Vec<usize> = (10..200).map(|v| s.insert(v).unwrap()).collect();
    for t in &live {
        assert_ne!(t & 0xFFFF_FFFF, 1, "the retired slot was handed out again");
    }
    for t in &old {
        assert!(is_bad_handle(s.with(*t, |_| Ok(()))), "closed token {t:#x} was accepted again");
        assert!(is_bad_handle(s.remove(*t)));
    }
}

#[test]
fn a_handle_in_use_is_busy_for_other_calls_and_for_close() {
    let s: &Slots<u32> = leaked(Slots::new(HandleType::Cursor));
    let t = s.insert(5).unwrap();
    let held = s.take(t).unwrap();
    assert!(matches!(s.with(t, |v| Ok(*v)), Err(Error::Busy(_))));
    assert!(matches!(s.remove(t), Err(Error::Busy(_))), "a close waits for no call: it refuses");
    drop(held);
    assert_eq!(s.with(t, |v| Ok(*v)).unwrap(), 5, "the refused close changed nothing");
    // A call that panics gives its slot back.
    let r = std::panic::catch_unwind(|| s.with(t, |_| -> Result<()> { panic!("inside a call") }));
    assert!(r.is_err());
    assert_eq!(s.remove(t).unwrap(), 5);
}

#[test]
fn another_process_handle_is_refused_and_kept() {
    let s: &Slots<u32> = leaked(Slots::new(HandleType::Cursor));
    let t = s.insert(5).unwrap();
    // As after fork(): the slot was filled by a process that is not this one.
    let slot = s.slot(0).unwrap();
    let mine = slot.process.load(Ordering::Relaxed);
    slot.process.store(mine ^ (1 << 40), Ordering::Relaxed);
    for e in [s.with(t, |v| Ok(*v)).unwrap_err(), s.remove(t).unwrap_err()] {
        assert!(matches!(e, Error::BadHandle(_)), "{e}");
        assert!(e.to_string().contains("fork"), "{e}");
    }
    slot.process.store(mine, Ordering::Relaxed);
    assert_eq!(s.with(t, |v| Ok(*v)).unwrap(), 5, "the refused calls changed nothing");
}

#[test]
fn two_threads_on_one_handle_get_statuses_and_never_share_the_object() {
    // Each call adds to a plain (non-atomic) counter in two steps; were two calls ever inside
    // at once, increments would be lost. Every call answers Ok or Busy.
    let s: &Slots<(u64, u64)> = leaked(Slots::new(HandleType::Cursor));
    let t = s.insert((0, 0)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut ok = 0u64;
                for _ in 0..CALLS {
                    match s.with(t, |v| {
                        let seen = v.0;
                        std::hint::black_box(&v);
                        v.0 = seen + 1;
                        v.1 += 1;
                        Ok(())
                    }) {
                        Ok(()) => ok += 1,
                        Err(Error::Busy(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                ok
            })
        })
        .collect();
    let ok: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    let v = s.remove(t).unwrap();
    assert_eq!(v, (ok, ok), "every call that answered Ok counted once");
}

#[test]
fn closes_racing_calls_never_drop_an_object_in_use() {
    // One thread closes and reopens handles while others call through the tokens they see:
    // every call answers Ok, Busy or BadHandle, and the objects stay whole.
    let s: &Slots<Vec<u64>> = leaked(Slots::new(HandleType::Cursor));
    let current = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(s.insert(vec![7; 16]).unwrap()));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (current, stop) = (current.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t = current.load(Ordering::Relaxed);
                    match s.with(t, |v| Ok(v.iter().sum::<u64>())) {
                        Ok(sum) => assert_eq!(sum, 7 * 16),
                        Err(Error::Busy(_) | Error::BadHandle(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for _ in 0..CALLS / 10 {
        let t = current.load(Ordering::Relaxed);
        loop {
            match s.remove(t) {
                Ok(v) => break assert_eq!(v, vec![7; 16]),
                Err(Error::Busy(_)) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        current.store(s.insert(vec![7; 16]).unwrap(), Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
}
