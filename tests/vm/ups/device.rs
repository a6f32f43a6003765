//! The emulated UPS as a USB device: an APC Back-UPS (051d:0002), a USB HID
//! Power Device with the report items NUT's `usbhid-ups` and its APC
//! subdriver read (docs/testing.md, "The emulated UPS"). Pure: descriptors,
//! and the answer to each control request for a given UPS state.

/// What the UPS reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Power {
    /// On mains (ACPresent).
    pub online: bool,
    /// Battery low (BelowRemainingCapacityLimit).
    pub low: bool,
    /// Charge, 0..=100 (RemainingCapacity).
    pub charge: u8,
    /// Seconds left on battery (RunTimeToEmpty).
    pub runtime: u16,
}

impl Power {
    /// On line, full battery.
    pub const ONLINE: Power = Power {
        online: true,
        low: false,
        charge: 100,
        runtime: 1800,
    };
    /// On battery.
    pub const BATTERY: Power = Power {
        online: false,
        low: false,
        charge: 60,
        runtime: 900,
    };
    /// On battery, low.
    pub const LOW: Power = Power {
        online: false,
        low: true,
        charge: 8,
        runtime: 90,
    };

    /// The state named by a control command.
    pub fn named(name: &str) -> Option<Power> {
        match name {
            "online" => Some(Power::ONLINE),
            "battery" => Some(Power::BATTERY),
            "low" => Some(Power::LOW),
            _ => None,
        }
    }

    /// Report 1's byte: bit 0 Charging, 1 Discharging, 2 ACPresent,
    /// 3 BelowRemainingCapacityLimit, 4 ShutdownImminent (never set: NUT
    /// would add an alarm). Charging and Discharging stay 0 so that NUT's
    /// status is exactly `OL`, `OB` or `OB LB`.
    fn status_bits(self) -> u8 {
        (u8::from(self.online) << 2) | (u8::from(self.low) << 3)
    }

    /// Report `id` with its id as byte 0, as GET_REPORT and the interrupt
    /// endpoint carry it; `None` for a report the device does not have.
    pub fn report(self, id: u8) -> Option<Vec<u8>> {
        match id {
            1 => Some(vec![1, self.status_bits()]),
            2 => Some(vec![2, self.charge]),
            3 => {
                let [lo, hi] = self.runtime.to_le_bytes();
                Some(vec![3, lo, hi])
            }
            4 => Some(vec![4, LOW_LIMIT]),
            _ => None,
        }
    }
}

/// RemainingCapacityLimit, percent.
const LOW_LIMIT: u8 = 10;

/// Vendor and product: APC Back-UPS.
pub const VID: u16 = 0x051d;
/// See [`VID`].
pub const PID: u16 = 0x0002;

/// The string descriptors' texts, by index (0 is the language list).
/// Constant across replugs: NUT reconnects only to the same strings.
const STRINGS: [&str; 3] = [
    "American Power Conversion",
    "Back-UPS ES 700G FW:871.O4 .I USB FW:O4",
    "HB0000000019",
];

/// The HID report descriptor: one Application collection UPS holding the
/// PowerSummary, whose PresentStatus flags are report 1 (Feature and Input,
/// same layout), RemainingCapacity report 2, RunTimeToEmpty report 3 and
/// RemainingCapacityLimit report 4. The usage page is never changed between
/// a Usage and its main item, so NUT's parser and the kernel's agree.
#[rustfmt::skip]
pub const REPORT_DESCRIPTOR: &[u8] = &[
    0x05, 0x84,       // Usage Page (Power Device)
    0x09, 0x04,       // Usage (UPS)
    0xA1, 0x01,       // Collection (Application)
    0x09, 0x24,       //   Usage (PowerSummary)
    0xA1, 0x00,       //   Collection (Physical)
    0x85, 0x01,       //     Report ID (1)
    0x09, 0x02,       //     Usage (PresentStatus)
    0xA1, 0x02,       //     Collection (Logical)
    0x05, 0x85,       //       Usage Page (Battery System)
    0x09, 0x44,       //       Usage (Charging)
    0x09, 0x45,       //       Usage (Discharging)
    0x09, 0xD0,       //       Usage (ACPresent)
    0x09, 0x42,       //       Usage (BelowRemainingCapacityLimit)
    0x15, 0x00,       //       Logical Minimum (0)
    0x25, 0x01,       //       Logical Maximum (1)
    0x75, 0x01,       //       Report Size (1)
    0x95, 0x04,       //       Report Count (4)
    0xB1, 0x02,       //       Feature (Data, Var, Abs): bits 0-3
    0x05, 0x84,       //       Usage Page (Power Device)
    0x09, 0x69,       //       Usage (ShutdownImminent)
    0x95, 0x01,       //       Report Count (1)
    0xB1, 0x02,       //       Feature (Data, Var, Abs): bit 4
    0x95, 0x03,       //       Report Count (3)
    0xB1, 0x03,       //       Feature (Const): bits 5-7
    0x05, 0x85,       //       Usage Page (Battery System)
    0x09, 0x44,       //       Usage (Charging)
    0x09, 0x45,       //       Usage (Discharging)
    0x09, 0xD0,       //       Usage (ACPresent)
    0x09, 0x42,       //       Usage (BelowRemainingCapacityLimit)
    0x95, 0x04,       //       Report Count (4)
    0x81, 0x02,       //       Input (Data, Var, Abs): bits 0-3
    0x05, 0x84,       //       Usage Page (Power Device)
    0x09, 0x69,       //       Usage (ShutdownImminent)
    0x95, 0x01,       //       Report Count (1)
    0x81, 0x02,       //       Input (Data, Var, Abs): bit 4
    0x95, 0x03,       //       Report Count (3)
    0x81, 0x03,       //       Input (Const): bits 5-7
    0xC0,             //     End Collection (PresentStatus)
    0x05, 0x85,       //     Usage Page (Battery System)
    0x85, 0x02,       //     Report ID (2)
    0x09, 0x66,       //     Usage (RemainingCapacity)
    0x15, 0x00,       //     Logical Minimum (0)
    0x25, 0x64,       //     Logical Maximum (100)
    0x75, 0x08,       //     Report Size (8)
    0x95, 0x01,       //     Report Count (1)
    0xB1, 0x02,       //     Feature (Data, Var, Abs)
    0x09, 0x66,       //     Usage (RemainingCapacity)
    0x81, 0x02,       //     Input (Data, Var, Abs)
    0x85, 0x03,       //     Report ID (3)
    0x09, 0x68,       //     Usage (RunTimeToEmpty)
    0x15, 0x00,       //     Logical Minimum (0)
    0x27, 0xFF, 0xFF, 0x00, 0x00, // Logical Maximum (65535), 4-byte form
    0x75, 0x10,       //     Report Size (16)
    0x95, 0x01,       //     Report Count (1)
    0x66, 0x01, 0x10, //     Unit (SI linear: seconds)
    0x55, 0x00,       //     Unit Exponent (0)
    0xB1, 0x02,       //     Feature (Data, Var, Abs)
    0x09, 0x68,       //     Usage (RunTimeToEmpty)
    0x81, 0x02,       //     Input (Data, Var, Abs)
    0x65, 0x00,       //     Unit (None)
    0x85, 0x04,       //     Report ID (4)
    0x09, 0x29,       //     Usage (RemainingCapacityLimit)
    0x15, 0x00,       //     Logical Minimum (0)
    0x25, 0x64,       //     Logical Maximum (100)
    0x75, 0x08,       //     Report Size (8)
    0x95, 0x01,       //     Report Count (1)
    0xB1, 0x02,       //     Feature (Data, Var, Abs)
    0xC0,             //   End Collection (PowerSummary)
    0xC0,             // End Collection (UPS)
];

/// The device descriptor. USB 1.1: a 2.0 device would be asked for a
/// device qualifier (vhci's root hub is high-speed).
pub fn device_descriptor() -> Vec<u8> {
    let [vl, vh] = VID.to_le_bytes();
    let [pl, ph] = PID.to_le_bytes();
    vec![
        18, 1, // bLength, DEVICE
        0x10, 0x01, // bcdUSB 1.10
        0, 0, 0,  // class, subclass, protocol: per interface
        64, // bMaxPacketSize0
        vl, vh, pl, ph, // idVendor, idProduct
        0x06, 0x01, // bcdDevice 1.06
        1, 2, 3, // iManufacturer, iProduct, iSerialNumber
        1, // bNumConfigurations
    ]
}

/// The HID class descriptor: HID 1.11, one report descriptor of
/// [`REPORT_DESCRIPTOR`]'s length (NUT reads exactly that many bytes).
pub fn hid_descriptor() -> Vec<u8> {
    let [ll, lh] = (REPORT_DESCRIPTOR.len() as u16).to_le_bytes();
    vec![9, 0x21, 0x11, 0x01, 0, 1, 0x22, ll, lh]
}

/// The configuration descriptor with its interface, HID and endpoint
/// descriptors (the HID descriptor right after the interface, where NUT
/// looks for it).
pub fn config_descriptor() -> Vec<u8> {
    let mut d = vec![
        9, 2, 0, 0, // bLength, CONFIGURATION, wTotalLength (below)
        1, 1, 0, // bNumInterfaces, bConfigurationValue, iConfiguration
        0xA0, 50, // bus powered with remote wakeup, 100 mA
        9, 4, 0, 0, 1, 3, 0, 0, 0, // interface 0: 1 endpoint, HID, no boot protocol
    ];
    d.extend(hid_descriptor());
    d.extend([7, 5, 0x81, 0x03, 8, 0, 10]); // endpoint 1 IN, interrupt, 8 bytes, 10 ms
    let [tl, th] = (d.len() as u16).to_le_bytes();
    d[2] = tl;
    d[3] = th;
    d
}

/// String descriptor `index` (0: the language list, US English).
pub fn string_descriptor(index: u8) -> Option<Vec<u8>> {
    if index == 0 {
        return Some(vec![4, 3, 0x09, 0x04]);
    }
    let text = STRINGS.get(usize::from(index) - 1)?;
    let mut d = vec![0, 3];
    for unit in text.encode_utf16() {
        d.extend(unit.to_le_bytes());
    }
    d[0] = d.len() as u8;
    Some(d)
}

/// A control request's setup packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl Setup {
    /// From the 8 bytes on the wire (little-endian fields).
    pub fn parse(b: [u8; 8]) -> Setup {
        Setup {
            request_type: b[0],
            request: b[1],
            value: u16::from_le_bytes([b[2], b[3]]),
            index: u16::from_le_bytes([b[4], b[5]]),
            length: u16::from_le_bytes([b[6], b[7]]),
        }
    }
}

/// The answer to a control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success with these bytes (IN; cut to wLength) or none (OUT).
    Data(Vec<u8>),
    /// The request is not supported: a STALL.
    Stall,
}

/// Answers control request `s` (with `data` for an OUT request) for a UPS
/// in state `power`.
pub fn control(s: Setup, data: &[u8], power: Power) -> Reply {
    let _ = data; // SET_REPORT's bytes: the limit is fixed, so unused
    let reply = match (s.request_type, s.request) {
        // GET_STATUS (device, interface, endpoint).
        (0x80..=0x82, 0x00) => Some(vec![0, 0]),
        // GET_DESCRIPTOR (standard).
        (0x80, 0x06) => {
            let [index, kind] = s.value.to_le_bytes();
            match kind {
                1 => Some(device_descriptor()),
                2 => Some(config_descriptor()),
                3 => string_descriptor(index),
                _ => None, // device qualifier, other speed, …
            }
        }
        // GET_CONFIGURATION.
        (0x80, 0x08) => Some(vec![1]),
        // GET_INTERFACE.
        (0x81, 0x0A) => Some(vec![0]),
        // GET_DESCRIPTOR (class, to the interface): HID, report.
        (0x81, 0x06) => match s.value {
            0x2100 => Some(hid_descriptor()),
            0x2200 => Some(REPORT_DESCRIPTOR.to_vec()),
            _ => None,
        },
        // SET_CONFIGURATION, SET_INTERFACE, CLEAR_FEATURE (endpoint halt),
        // SET_FEATURE (remote wakeup): accepted.
        (0x00, 0x09) | (0x01, 0x0B) | (0x00..=0x02, 0x01) | (0x00, 0x03) => Some(Vec::new()),
        // HID GET_REPORT (input or feature).
        (0xA1, 0x01) => {
            let [id, kind] = s.value.to_le_bytes();
            if kind == 1 || kind == 3 {
                power.report(id)
            } else {
                None
            }
        }
        // HID SET_IDLE, SET_PROTOCOL: accepted.
        (0x21, 0x0A) | (0x21, 0x0B) => Some(Vec::new()),
        // HID SET_REPORT: the low limit (report 4, as `upsrw` sets it).
        (0x21, 0x09) if s.value == 0x0304 => Some(Vec::new()),
        _ => None,
    };
    match reply {
        Some(mut d) => {
            d.truncate(usize::from(s.length));
            Reply::Data(d)
        }
        None => Reply::Stall,
    }
}
