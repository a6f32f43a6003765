//! Table tests of [`super`].
use super::*;
use crate::core::rules::parse::parse;

const NUT: &str = "SUBSYSTEM!=\"usb\", GOTO=\"end\"\nATTR{idVendor}==\"051d\", ATTR{idProduct}==\"0002\", MODE=\"664\", GROUP=\"nut\"\nLABEL=\"end\"\n";

fn dev(v: &str, p: &str) -> Device {
    Device {
        sysname: "1-1".into(),
        vendor: v.into(),
        product: p.into(),
        busnum: 1,
        devnum: 4,
        manufacturer: None,
        name: None,
        serial: None,
    }
}

fn grant_for(d: &Device) -> Grant {
    let mut g = Grant::default();
    grants(
        "62-nut.rules",
        &parse(NUT.as_bytes()),
        &d.vendor,
        &d.product,
        &mut g,
    );
    g
}

const NUT_GID: u32 = 120;
fn gid(n: &str) -> Option<u32> {
    (n == "nut").then_some(NUT_GID)
}
fn uid(n: &str) -> Option<u32> {
    (n == "root").then_some(0)
}
fn nut_user() -> User {
    User {
        name: "nut".into(),
        uid: 110,
        gids: vec![NUT_GID],
    }
}

#[test]
fn hotplug_events() {
    assert_eq!(product_id("51d/2/1").as_deref(), Some("051d:0002"));
    assert_eq!(product_id("627/1/0").as_deref(), Some("0627:0001"));
    assert_eq!(product_id("ffff/ABCD/100").as_deref(), Some("ffff:abcd"));
    assert_eq!(product_id("51d"), None);
    assert_eq!(product_id("xyz/1/0"), None);
    let ev = |action: &str, devnum, id: Option<&str>| UsbEvent {
        action: action.into(),
        busnum: 1,
        devnum,
        id: id.map(Into::into),
        synthetic: false,
    };
    let add = ev("add", 4, Some("051d:0002"));
    assert_eq!(add.label(), "add 001:004");
    assert!(add.wants_check() && !ev("bind", 4, None).wants_check());
    let none: [String; 0] = [];
    // Expected VID:PID: concerns even with no rule installed.
    assert!(event_concerns(&add, &["051d:0002".into()], &none, &none));
    // A device a rule grants, now listed.
    assert!(event_concerns(&add, &[], &none, &["001:004".into()]));
    // Removed: listed before, gone now (remove events may lack PRODUCT).
    assert!(event_concerns(
        &ev("remove", 4, None),
        &[],
        &["001:004".into()],
        &none
    ));
    // A keyboard nobody asked about.
    assert!(!event_concerns(
        &ev("add", 5, Some("046d:c31c")),
        &["051d:0002".into()],
        &["001:004".into()],
        &none
    ));
    // Lost events: every bridge looks at every device again.
    let lost = UsbEvent::lost();
    assert!(lost.wants_check() && lost.is_lost() && !add.is_lost());
    assert_eq!(lost.label(), "lost events");
    assert!(event_concerns(&lost, &[], &none, &none));
    // So does `hostbridge wait`'s request.
    let asked = UsbEvent::asked();
    assert!(asked.wants_check() && !asked.is_lost());
    assert_eq!(asked.label(), "hostbridge wait");
    assert!(event_concerns(&asked, &[], &none, &none));
}

#[test]
fn verdict_table() {
    let apc = dev("051d", "0002");
    let g = grant_for(&apc);
    assert_eq!(g.rules, ["62-nut.rules:2"]);
    assert_eq!((g.mode, g.group.as_deref()), (Some(0o664), Some("nut")));
    let node = |gid, mode| Node {
        is_char: true,
        uid: 0,
        gid,
        mode,
        rdev: None,
    };
    let v = |n: Option<Node>, u: &User| verdict(&apc, n.as_ref(), &g, u, &gid, &uid);
    assert_eq!(v(Some(node(NUT_GID, 0o664)), &nut_user()), Verdict::Ok);
    assert!(
        matches!(v(Some(node(0, 0o600)), &nut_user()), Verdict::RulesNotApplied(r) if r.contains("mode 0600 (rules: 0664)") && r.contains("udevadm trigger --action=add"))
    );
    assert!(
        matches!(v(None, &nut_user()), Verdict::RulesNotApplied(r) if r.contains("does not exist"))
    );
    let stranger = User {
        name: "bob".into(),
        uid: 1000,
        gids: vec![1000],
    };
    assert!(
        matches!(v(Some(node(NUT_GID, 0o664)), &stranger), Verdict::UserCannotOpen(r) if r.contains("not in the node's group"))
    );
    let other = dev("dead", "beef");
    assert!(
        matches!(verdict(&other, None, &grant_for(&other), &nut_user(), &gid, &uid), Verdict::NoRuleMatches(r) if r.contains("dead:beef"))
    );
    // Product mismatch: the vendor alone does not select the device.
    let apc_other = dev("051d", "0003");
    assert!(grant_for(&apc_other).rules.is_empty());
    // An unknown group: udevd dropped the line.
    let no_gid = |_: &str| None;
    assert!(
        matches!(verdict(&apc, Some(&node(0, 0o600)), &g, &nut_user(), &no_gid, &uid), Verdict::RulesNotApplied(r) if r.contains("does not exist on this host"))
    );
}
