//! The README's property tables say what `gst-inspect-1.0` says: every
//! property of the element's own (not its base classes'), one row each,
//! with its type, range, access and default as gst-inspect-1.0 prints them
//! for the installed plugin. On a mismatch the test prints the rows to fix,
//! ready to paste.
//!
//! A row is `` | `name` | type | default | description | ``:
//! * type: `string`, `bool`, `uint`, `uint64`, `int`, `double`,
//!   `GstStructure`, or `enum: a, b, c` (its values' nicks, as gst-inspect
//!   lists them); then `, MIN–MAX` when a writable number's range is not the
//!   whole type's, and `, read-only` or `, write-only`;
//! * default: for a writable property, gst-inspect's default in backticks
//!   (an enum's nick; `none` for a NULL string); empty when read-only;
//! * description: free text, not compared.

mod common;

use std::collections::BTreeMap;

use common::installed::Home;
use gst::glib;
use gst::prelude::*;

/// One property as gst-inspect-1.0 prints it.
#[derive(Debug, Default)]
struct Inspected {
    blurb: String,
    flags: String,
    type_line: String,
    enum_nicks: Vec<String>,
}

fn inspect(home: &Home, element: &str) -> BTreeMap<String, Inspected> {
    let out = home
        .command("gst-inspect-1.0")
        .arg(element)
        .output()
        .expect("run gst-inspect-1.0");
    assert!(out.status.success(), "gst-inspect-1.0 {element} failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let section = text
        .split_once("Element Properties:\n")
        .expect("no properties")
        .1;
    let mut props = BTreeMap::new();
    let mut current: Option<(String, Inspected)> = None;
    for line in section.lines() {
        // A structure's default is followed by an empty line; the next
        // section ("Element Actions:") starts unindented.
        if line.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if indent == 2 {
            if let Some((name, p)) = current.take() {
                props.insert(name, p);
            }
            let (name, blurb) = body.split_once(':').unwrap();
            current = Some((
                name.trim().to_owned(),
                Inspected {
                    blurb: blurb.trim().to_owned(),
                    ..Inspected::default()
                },
            ));
        } else if let Some((_, p)) = current.as_mut() {
            if let Some(flags) = body.strip_prefix("flags: ") {
                p.flags = flags.to_owned();
            } else if p.type_line.is_empty() && indent == 24 {
                p.type_line = body.to_owned();
            } else if body.starts_with('(') && p.type_line.starts_with("Enum") {
                // "(0): inbound          - The inbound track …"
                let nick = body.split_once("):").unwrap().1;
                p.enum_nicks
                    .push(nick.split(" - ").next().unwrap().trim().to_owned());
            }
        }
    }
    if let Some((name, p)) = current {
        props.insert(name, p);
    }
    props
}

/// The properties the element class installs itself (including one that
/// replaces a base class's, as the sink's `stats` does BaseSink's).
fn own_properties(element: &str) -> Vec<String> {
    common::init();
    let factory = gst::ElementFactory::find(element).unwrap();
    let ty = factory.load().unwrap().element_type();
    glib::object::Class::<gst::Element>::from_type(ty)
        .unwrap()
        .list_properties()
        .iter()
        .filter(|p| p.owner_type() == ty)
        .map(|p| p.name().to_owned())
        .collect()
}

/// `(type, default)` cells of a row, from gst-inspect's lines.
fn cells(p: &Inspected) -> (String, String) {
    let readable = p.flags.contains("readable");
    let writable = p.flags.contains("writable");
    let line = p.type_line.as_str();
    let (kind, rest) = line.split_once('.').unwrap_or((line, ""));
    let mut ty = match kind {
        "String" => "string".to_owned(),
        "Boolean" => "bool".to_owned(),
        "Unsigned Integer" => "uint".to_owned(),
        "Unsigned Integer64" => "uint64".to_owned(),
        "Integer" => "int".to_owned(),
        "Integer64" => "int64".to_owned(),
        "Double" => "double".to_owned(),
        "Boxed pointer of type \"GstStructure\"" => "GstStructure".to_owned(),
        k if k.starts_with("Enum ") => format!("enum: {}", p.enum_nicks.join(", ")),
        k => k.to_owned(),
    };
    let default = rest
        .split_once("Default:")
        .map(|(_, d)| d.trim().trim_end_matches("Write only").trim())
        .or_else(|| line.split_once("Default:").map(|(_, d)| d.trim()))
        .unwrap_or("");
    if writable && let Some((_, range)) = rest.split_once("Range:") {
        let range = range.split("Default:").next().unwrap();
        let (min, max) = range.split_once(" - ").unwrap();
        let (min, max) = (min.trim(), max.trim());
        let whole = matches!(
            (ty.as_str(), min, max),
            ("uint", "0", "4294967295")
                | ("uint64", "0", "18446744073709551615")
                | ("int", "-2147483648", "2147483647")
                | ("double", "-1.797693e+308", "1.797693e+308")
        );
        if !whole {
            ty += &format!(", {min}–{max}");
        }
    }
    match (readable, writable) {
        (true, false) => ty += ", read-only",
        (false, true) => ty += ", write-only",
        _ => {}
    }
    let default = if !writable {
        String::new()
    } else if kind.starts_with("Enum ") {
        // `0, "inbound"`
        format!(
            "`{}`",
            default.rsplit(", ").next().unwrap().trim_matches('"')
        )
    } else if default == "null" {
        "none".to_owned()
    } else {
        format!("`{}`", default.trim_matches('"'))
    };
    (ty, default)
}

/// The rows of the table under `### Properties` in the `## {element}`
/// section: name → (type, default) cells.
fn readme_rows(readme: &str, element: &str) -> Vec<(String, String, String)> {
    let section = readme
        .split_once(&format!("\n## {element}\n"))
        .unwrap_or_else(|| panic!("README has no \"## {element}\" section"))
        .1;
    let table = section
        .split_once("\n### Properties\n")
        .unwrap_or_else(|| panic!("no \"### Properties\" under \"## {element}\""))
        .1;
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            (
                cells[0].trim_matches('`').to_owned(),
                cells.get(1).unwrap_or(&"").to_string(),
                cells.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

/// Differences between the README's table and gst-inspect-1.0, as rows to
/// remove (-) and rows to put in (+).
fn diff(home: &Home, readme: &str, element: &str) -> Vec<String> {
    let inspected = inspect(home, element);
    let own = own_properties(element);
    let rows = readme_rows(readme, element);
    let mut problems = Vec::new();
    for name in &own {
        let p = inspected
            .get(name)
            .unwrap_or_else(|| panic!("gst-inspect-1.0 does not list {name}"));
        let (ty, default) = cells(p);
        let want = if default.is_empty() {
            format!("| `{name}` | {ty} | |")
        } else {
            format!("| `{name}` | {ty} | {default} |")
        };
        match rows.iter().filter(|r| &r.0 == name).collect::<Vec<_>>()[..] {
            [] => problems.push(format!("+ {want} {} |", p.blurb)),
            [(_, t, d)] if *t == ty && *d == default => {}
            [(_, t, d)] => {
                problems.push(format!("- | `{name}` | {t} | {d} |"));
                problems.push(format!("+ {want}"));
            }
            _ => problems.push(format!("- more than one row for `{name}`")),
        }
    }
    for (name, t, d) in &rows {
        if !own.contains(name) {
            problems.push(format!(
                "- | `{name}` | {t} | {d} |   (no such property of {element})"
            ));
        }
    }
    problems
}

#[test]
fn readme_property_tables_match_gst_inspect() {
    let home = Home::new("readme-props");
    home.install(&[]);
    let readme = std::fs::read_to_string(common::installed::repo().join("README.md")).unwrap();
    let mut report = String::new();
    for element in ["twiliostreamsrc", "twiliostreamsink"] {
        let problems = diff(&home, &readme, element);
        if !problems.is_empty() {
            report += &format!(
                "\nREADME.md, \"## {element}\" > \"### Properties\" (- README, + gst-inspect-1.0):\n{}\n",
                problems.join("\n")
            );
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn every_enum_property_lists_its_values() {
    let home = Home::new("enums");
    home.install(&[]);
    for element in ["twiliostreamsrc", "twiliostreamsink"] {
        for (name, p) in inspect(&home, element) {
            if p.type_line.starts_with("Enum") {
                assert!(
                    p.enum_nicks.len() >= 2,
                    "{element}.{name}: gst-inspect-1.0 lists {:?}",
                    p.enum_nicks
                );
            }
        }
    }
    let src = inspect(&home, "twiliostreamsrc");
    assert_eq!(src["track"].enum_nicks, ["inbound", "outbound", "both"]);
    assert_eq!(src["gap-fill"].enum_nicks, ["plc", "silence"]);
}
