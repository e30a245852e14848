//! Property test: no input makes the reader or the rules panic, and every
//! diagnostic points inside the input.

use lab::schema::check::check_text;
use proptest::prelude::*;

const SEED: &str = r#"<domain type='kvm'><devices>
  <hostdev mode='subsystem' type='pci' managed='yes' assigned='no'>
    <source><address domain='0x0000' bus='0x00' slot='0x06' function='0x1'/></source>
    <address type='unassigned'/><acpi index='1'/><boot order='2'/><rom bar='off'/>
  </hostdev>
  <interface type='network'><address type='pci' slot='0x05'/></interface>
</devices></domain>"#;

fn assert_sane(text: &str) {
    let checked = check_text("fuzz.xml", text);
    let lines = text.split('\n').count() as u32;
    for d in &checked.diagnostics {
        assert!(
            d.line >= 1 && d.line <= lines,
            "line {} outside 1..={lines}: {d}",
            d.line
        );
        assert!(d.column >= 1, "column 0: {d}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text(text in "\\PC{0,300}") {
        assert_sane(&text);
    }

    #[test]
    fn xml_like_text(text in "[<>/='\" a-z0-9x\n&;]{0,200}") {
        assert_sane(&text);
    }

    #[test]
    fn mutated_domain(cut in 0usize..SEED.len(), insert in "[<>/='\"a-z0-9&;\n]{0,8}", drop in 0usize..12) {
        let mut text = SEED.to_string();
        let at = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap();
        let end = (at + drop).min(text.len());
        text.replace_range(at..end, &insert);
        assert_sane(&text);
    }
}

/// 200,000 nested elements (a stack overflow once): the reader stops at
/// libxml2's depth and says where.
#[test]
fn deep_nesting_is_an_xml_error_at_the_element_too_deep() {
    let depth = 200_000;
    let mut text = String::from("<domain type='kvm'>\n");
    text.push_str(&"<devices>".repeat(depth));
    text.push_str(&"</devices>".repeat(depth));
    text.push_str("\n</domain>\n");
    let checked = check_text("deep.xml", &text);
    assert_eq!(checked.diagnostics.len(), 1, "{:?}", checked.diagnostics);
    let d = &checked.diagnostics[0];
    assert_eq!(d.rule.as_str(), "XML");
    assert!(d.is_error());
    // <domain> is level 1; the 256th <devices> (level 257) is one too deep.
    let column = 1 + 255 * "<devices>".len() as u32;
    assert_eq!((d.file.as_str(), d.line, d.column), ("deep.xml", 2, column));
    assert!(d.message.contains("at most 256 deep"), "{}", d.message);
}
