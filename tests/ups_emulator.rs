//! The emulated UPS's pure parts, on the host: its USB descriptors agree
//! with each other and with what NUT's usbhid-ups reads, its reports have
//! the sizes its HID report descriptor declares, and the USB/IP messages
//! have the kernel's layout. The emulator itself runs in the VM tests
//! (tests/vm.rs), against the guest kernel's vhci-hcd and a real NUT.

#![allow(clippy::unwrap_used)]

#[path = "vm/ups/device.rs"]
#[allow(dead_code)]
mod device;
#[path = "vm/ups/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::collections::BTreeMap;

use device::{Power, Reply, Setup, control};

fn get(request_type: u8, request: u8, value: u16, length: u16) -> Reply {
    let s = Setup {
        request_type,
        request,
        value,
        index: 0,
        length,
    };
    control(s, &[], Power::ONLINE)
}

fn data(r: Reply) -> Vec<u8> {
    match r {
        Reply::Data(d) => d,
        Reply::Stall => panic!("stalled"),
    }
}

#[test]
fn descriptors_agree_with_each_other_and_with_what_nut_reads() {
    let dev = data(get(0x80, 6, 0x0100, 18));
    assert_eq!(dev.len(), 18);
    assert_eq!(&dev[8..12], &[0x1d, 0x05, 0x02, 0x00], "051d:0002");
    assert_eq!(
        &dev[2..4],
        &[0x10, 0x01],
        "USB 1.1: no device qualifier asked"
    );
    // The kernel reads 64 bytes of the device descriptor first: the reply
    // is the descriptor, not more.
    assert_eq!(data(get(0x80, 6, 0x0100, 64)), dev);

    let cfg = data(get(0x80, 6, 0x0200, 255));
    assert_eq!(usize::from(u16::from_le_bytes([cfg[2], cfg[3]])), cfg.len());
    assert_eq!(data(get(0x80, 6, 0x0200, 9)), cfg[..9], "first 9 bytes");
    // Interface, then the HID descriptor right after it (where NUT looks),
    // then endpoint 0x81, interrupt.
    assert_eq!(&cfg[9..11], &[9, 4]);
    assert_eq!(cfg[14], 3, "HID class");
    let hid = &cfg[18..27];
    assert_eq!(&hid[..2], &[9, 0x21]);
    assert_eq!(
        data(get(0x81, 6, 0x2100, 9)),
        hid,
        "GET_DESCRIPTOR(HID) says the same"
    );
    assert_eq!(&cfg[27..31], &[7, 5, 0x81, 0x03]);
    let report_len = usize::from(u16::from_le_bytes([hid[7], hid[8]]));
    let report = data(get(0x81, 6, 0x2200, report_len as u16));
    assert_eq!(report, device::REPORT_DESCRIPTOR);
    assert_eq!(
        report_len,
        report.len(),
        "NUT reads exactly the advertised length"
    );

    // Strings: language list, then UTF-16LE texts with a right bLength.
    assert_eq!(data(get(0x80, 6, 0x0300, 4)), [4, 3, 0x09, 0x04]);
    let product = data(get(0x80, 6, 0x0302, 255));
    assert_eq!(usize::from(product[0]), product.len());
    let units: Vec<u16> = product[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).unwrap();
    assert!(text.starts_with("Back-UPS ES 700G"), "{text}");
    // NUT's APC subdriver treats these product names specially.
    assert!(!text.starts_with("Back-UPS CS") && !text.starts_with("Back-UPS ES 525"));
    assert_eq!(get(0x80, 6, 0x0304, 255), Reply::Stall, "no string 4");
    assert_eq!(
        get(0x80, 6, 0x0600, 10),
        Reply::Stall,
        "no device qualifier"
    );
}

/// Walks the report descriptor's short items: the bits each report ID
/// declares, per main item kind (Input 0x80, Feature 0xB0), and whether
/// the collections close.
fn declared_bits(desc: &[u8]) -> BTreeMap<(u8, u8), u32> {
    let (mut size, mut count, mut id, mut depth) = (0u32, 0u32, 0u8, 0i32);
    let mut bits = BTreeMap::new();
    let mut i = 0;
    while i < desc.len() {
        let prefix = desc[i];
        let n = match prefix & 3 {
            3 => 4,
            k => usize::from(k),
        };
        let mut v = 0u32;
        for (k, b) in desc[i + 1..i + 1 + n].iter().enumerate() {
            v |= u32::from(*b) << (8 * k);
        }
        match prefix & 0xFC {
            0x74 => size = v,
            0x94 => count = v,
            0x84 => id = v as u8,
            0xA0 => depth += 1,
            0xC0 => depth -= 1,
            kind @ (0x80 | 0xB0) => *bits.entry((id, kind)).or_insert(0) += size * count,
            _ => {}
        }
        i += 1 + n;
    }
    assert_eq!(depth, 0, "collections balance");
    bits
}

#[test]
fn each_report_has_the_size_its_descriptor_declares() {
    let bits = declared_bits(device::REPORT_DESCRIPTOR);
    for state in [Power::ONLINE, Power::BATTERY, Power::LOW] {
        for id in 1..=4u8 {
            let r = state.report(id).unwrap();
            assert_eq!(r[0], id, "report id first");
            let feature = bits[&(id, 0xB0)];
            assert_eq!((r.len() as u32 - 1) * 8, feature, "report {id}");
            if let Some(input) = bits.get(&(id, 0x80)) {
                assert_eq!(*input, feature, "report {id}: Input and Feature alike");
            }
        }
        assert_eq!(state.report(5), None);
    }
    // And GET_REPORT (feature, id) answers them.
    assert_eq!(data(get(0xA1, 1, 0x0301, 2)), [1, 0x04]);
    assert_eq!(get(0xA1, 1, 0x0305, 2), Reply::Stall);
}

#[test]
fn states_give_the_status_bits_nut_maps_to_ol_ob_and_lb() {
    // bit 2 ACPresent, bit 3 BelowRemainingCapacityLimit; Charging (0),
    // Discharging (1) and ShutdownImminent (4) clear.
    assert_eq!(Power::ONLINE.report(1).unwrap(), [1, 0b0000_0100]);
    assert_eq!(Power::BATTERY.report(1).unwrap(), [1, 0]);
    assert_eq!(Power::LOW.report(1).unwrap(), [1, 0b0000_1000]);
    let rt = Power::LOW.report(3).unwrap();
    assert_eq!(u16::from_le_bytes([rt[1], rt[2]]), Power::LOW.runtime);
    assert_eq!(Power::named("battery"), Some(Power::BATTERY));
    assert_eq!(Power::named("nonsense"), None);
}

#[test]
fn usbip_messages_have_the_kernels_layout() {
    let mut h = [0u8; wire::HEADER];
    h[0..4].copy_from_slice(&1u32.to_be_bytes()); // CMD_SUBMIT
    h[4..8].copy_from_slice(&7u32.to_be_bytes()); // seqnum
    h[12..16].copy_from_slice(&1u32.to_be_bytes()); // IN
    h[24..28].copy_from_slice(&64u32.to_be_bytes()); // length
    h[40..48].copy_from_slice(&[0x80, 6, 0, 1, 0, 0, 64, 0]);
    let cmd = wire::decode(&h).unwrap();
    let wire::Command::Submit {
        seqnum,
        ep,
        dir_in,
        length,
        setup,
    } = cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!((seqnum, ep, dir_in, length), (7, 0, true, 64));
    assert_eq!(
        Setup::parse(setup),
        Setup {
            request_type: 0x80,
            request: 6,
            value: 0x0100,
            index: 0,
            length: 64
        }
    );
    h[32..36].copy_from_slice(&3u32.to_be_bytes());
    assert!(wire::decode(&h).is_err(), "iso URBs are not ours");

    let r = wire::ret_submit_in(7, 0, &[1, 2, 3]);
    assert_eq!(r.len(), 51);
    assert_eq!(&r[0..8], &[0, 0, 0, 3, 0, 0, 0, 7]);
    assert_eq!(&r[24..28], &[0, 0, 0, 3], "actual_length");
    assert_eq!(&r[48..], &[1, 2, 3]);
    let stall = wire::ret_submit(8, wire::EPIPE, 0);
    assert_eq!(&stall[20..24], &(-32i32).to_be_bytes());

    let mut u = [0u8; wire::HEADER];
    u[0..4].copy_from_slice(&2u32.to_be_bytes());
    u[4..8].copy_from_slice(&9u32.to_be_bytes());
    u[20..24].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(
        wire::decode(&u).unwrap(),
        wire::Command::Unlink {
            seqnum: 9,
            victim: 7
        }
    );
    let r = wire::ret_unlink(9, wire::ECONNRESET);
    assert_eq!(
        (&r[0..8], &r[20..24]),
        (&[0, 0, 0, 4, 0, 0, 0, 9][..], &(-104i32).to_be_bytes()[..])
    );
}
