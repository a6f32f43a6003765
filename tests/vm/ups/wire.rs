//! The USB/IP URB protocol between the kernel's `vhci-hcd` and a device
//! server, after attach (the kernel's
//! Documentation/usb/usbip_protocol.rst; `drivers/usb/usbip`): 48-byte
//! headers, every 32-bit field big-endian, the setup packet as on the bus.
//! Pure: encoding and decoding.

/// `USBIP_CMD_SUBMIT`.
pub const CMD_SUBMIT: u32 = 1;
/// `USBIP_CMD_UNLINK`.
pub const CMD_UNLINK: u32 = 2;
/// `USBIP_RET_SUBMIT`.
pub const RET_SUBMIT: u32 = 3;
/// `USBIP_RET_UNLINK`.
pub const RET_UNLINK: u32 = 4;
/// Every header's length.
pub const HEADER: usize = 48;
/// `-EPIPE`: a stall.
pub const EPIPE: i32 = -32;
/// `-ECONNRESET`: an unlinked URB.
pub const ECONNRESET: i32 = -104;

/// A command from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A URB: `seqnum`, endpoint, direction IN, the buffer length (IN: the
    /// most to return; OUT: the bytes that follow the header), the setup
    /// packet (endpoint 0).
    Submit {
        seqnum: u32,
        ep: u32,
        dir_in: bool,
        length: u32,
        setup: [u8; 8],
    },
    /// Cancel URB `victim`; answered under this command's own `seqnum`.
    Unlink { seqnum: u32, victim: u32 },
}

fn be(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a header; `Err` names what is wrong with it.
pub fn decode(h: &[u8; HEADER]) -> Result<Command, String> {
    let seqnum = be(h, 4);
    match be(h, 0) {
        CMD_SUBMIT => {
            let mut setup = [0; 8];
            setup.copy_from_slice(&h[40..48]);
            let packets = be(h, 32);
            // Non-iso URBs carry 0 (older kernels: 0xffffffff).
            if packets != 0 && packets != u32::MAX {
                return Err(format!("iso URB with {packets} packets"));
            }
            Ok(Command::Submit {
                seqnum,
                ep: be(h, 16),
                dir_in: be(h, 12) == 1,
                length: be(h, 24),
                setup,
            })
        }
        CMD_UNLINK => Ok(Command::Unlink {
            seqnum,
            victim: be(h, 20),
        }),
        other => Err(format!("unknown command {other:#x}")),
    }
}

/// `RET_SUBMIT` for IN URB `seqnum`: `status` (0 or a negative errno) and
/// the `data` read, after the header.
pub fn ret_submit_in(seqnum: u32, status: i32, data: &[u8]) -> Vec<u8> {
    let mut m = ret_submit(seqnum, status, data.len() as u32);
    m.extend_from_slice(data);
    m
}

/// `RET_SUBMIT` for OUT URB `seqnum`: `status` and the bytes `taken` (no
/// data follows).
pub fn ret_submit(seqnum: u32, status: i32, taken: u32) -> Vec<u8> {
    let mut m = vec![0u8; HEADER];
    m[0..4].copy_from_slice(&RET_SUBMIT.to_be_bytes());
    m[4..8].copy_from_slice(&seqnum.to_be_bytes());
    m[20..24].copy_from_slice(&status.to_be_bytes());
    m[24..28].copy_from_slice(&taken.to_be_bytes());
    m
}

/// `RET_UNLINK` for the unlink command `seqnum`: `ECONNRESET` if its URB
/// was still pending (and is dropped), 0 if it was already answered.
pub fn ret_unlink(seqnum: u32, status: i32) -> Vec<u8> {
    let mut m = vec![0u8; HEADER];
    m[0..4].copy_from_slice(&RET_UNLINK.to_be_bytes());
    m[4..8].copy_from_slice(&seqnum.to_be_bytes());
    m[20..24].copy_from_slice(&status.to_be_bytes());
    m
}
