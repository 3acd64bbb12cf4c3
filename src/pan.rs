//! Card-number (PAN) detection. Invariant 6: registers send payment-method tokens, never card
//! numbers; any field holding a Luhn-valid run of 13–19 digits is refused before anything is
//! parsed into domain types, written to the database or logged.
//!
//! A "run" is a sequence of digits in which single spaces or dashes may separate groups
//! (`4242 4242 4242 4242`, `4242-4242-4242-4242`). Where separators split a longer run,
//! every contiguous span of whole groups with 13–19 digits is checked too, so two numbers
//! written side by side cannot hide one another. The scan works on raw bytes (so it also
//! covers malformed bodies and object keys) and on decoded JSON strings (so `\u0034…`
//! escapes cannot smuggle digits past it).

/// True when `text` contains a Luhn-valid run of 13–19 digits.
pub fn contains_card_number(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // Collect the groups of one run: digits, optionally joined by one separator.
        let mut groups: Vec<&[u8]> = Vec::new();
        let mut start = i;
        loop {
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(&text[start..i]);
            let joined = i + 1 < text.len()
                && (text[i] == b' ' || text[i] == b'-')
                && text[i + 1].is_ascii_digit();
            if !joined {
                break;
            }
            i += 1;
            start = i;
        }
        if run_has_card_number(&groups) {
            return true;
        }
    }
    false
}

/// True when any JSON string, key or number in `value` holds a card number; returns the
/// path of the first such field (`lines[0].description`), never its content.
pub fn find_in_json(value: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, path: &mut String) -> Option<String> {
        use serde_json::Value;
        match v {
            Value::String(s) if contains_card_number(s.as_bytes()) => Some(path.clone()),
            Value::Number(n) if contains_card_number(n.to_string().as_bytes()) => {
                Some(path.clone())
            }
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            Value::Object(map) => map.iter().find_map(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if contains_card_number(k.as_bytes()) {
                    path.push_str("<key>");
                    return Some(path.clone());
                }
                path.push_str(k);
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    walk(value, &mut String::new())
}

fn run_has_card_number(groups: &[&[u8]]) -> bool {
    for first in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        for group in &groups[first..] {
            digits.extend_from_slice(group);
            if digits.len() > 19 && first + 1 < groups.len() {
                break;
            }
            if (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
                return true;
            }
        }
    }
    false
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_card_numbers_are_found_in_any_common_spelling() {
        for pan in [
            "4242424242424242",
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "378282246310005",
            "6011111111111117",
            "note: card 4000056655665556 declined",
            "4222222222222", // 13-digit Visa
        ] {
            assert!(contains_card_number(pan.as_bytes()), "{pan} not found");
        }
    }

    #[test]
    fn ordinary_pos_numbers_are_not_card_numbers() {
        for text in [
            "049000050103", // UPC-A, 12 digits
            "4242424242424241",
            "R1-000123",
            "2026-11-24",
            "430",
            "12345678901234567890123", // a 23-digit run is not a 13-19 digit run
        ] {
            assert!(!contains_card_number(text.as_bytes()), "{text} flagged");
        }
    }

    #[test]
    fn a_card_number_beside_other_digit_groups_is_still_found() {
        assert!(contains_card_number(b"12 4242 4242 4242 4242"));
        assert!(contains_card_number(b"4242424242424242 99"));
    }

    #[test]
    fn json_paths_name_the_field_and_never_its_content() {
        let v: serde_json::Value = serde_json::json!({
            "lines": [{"sku": "1", "description": "\u{34}242424242424242"}]
        });
        assert_eq!(find_in_json(&v).as_deref(), Some("lines[0].description"));
        let n: serde_json::Value = serde_json::from_str(r#"{"total": 4242424242424242}"#).unwrap();
        assert_eq!(find_in_json(&n).as_deref(), Some("total"));
        let k: serde_json::Value = serde_json::from_str(r#"{"4242424242424242": 1}"#).unwrap();
        assert_eq!(find_in_json(&k).as_deref(), Some("<key>"));
    }
}
