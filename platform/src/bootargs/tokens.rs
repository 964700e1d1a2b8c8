//! Splitting a command line into `key[=value]` arguments the way Linux does
//! (lib/cmdline.c `next_arg`), without copying: double quotes group spaces, and a quote
//! opening the argument or its value is dropped with the matching closing quote.

/// One argument: `key` and, after the first `=`, `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arg<'a> {
    pub key: &'a str,
    pub value: Option<&'a str>,
}

/// The arguments of `cmdline`, in order. Empty arguments (`""`) are skipped.
pub(super) fn args(cmdline: &str) -> impl Iterator<Item = Arg<'_>> {
    let mut rest = cmdline;
    core::iter::from_fn(move || {
        loop {
            let (arg, after) = next_arg(rest)?;
            rest = after;
            if !arg.key.is_empty() || arg.value.is_some() {
                return Some(arg);
            }
        }
    })
}

fn is_space(b: u8) -> bool {
    // C isspace() in the "C" locale.
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The next argument and the text after it, or `None` when only spaces are left.
fn next_arg(text: &str) -> Option<(Arg<'_>, &str)> {
    let text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let bytes = text.as_bytes();
    let quoted = bytes.first() == Some(&b'"');
    let start = usize::from(quoted);
    if text.is_empty() {
        return None;
    }
    let mut in_quote = quoted;
    let mut equals = None;
    let mut end = start;
    while let Some(&b) = bytes.get(end) {
        if is_space(b) && !in_quote {
            break;
        }
        if equals.is_none() && b == b'=' {
            equals = Some(end);
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
        end += 1;
    }
    let rest = text.get(end..).unwrap_or_default();
    // Every index below is at an ASCII byte (quote, '=', space) or the end, so on a
    // character boundary; `get` keeps that from ever panicking all the same.
    let ends_with_quote = end > start && bytes.get(end - 1) == Some(&b'"');
    let arg = match equals {
        None => {
            let key_end = if quoted && ends_with_quote {
                end - 1
            } else {
                end
            };
            Arg {
                key: text.get(start..key_end).unwrap_or_default(),
                value: None,
            }
        }
        Some(equals) => {
            let mut value_start = equals + 1;
            let mut value_end = end;
            if bytes.get(value_start) == Some(&b'"') {
                value_start += 1;
                if ends_with_quote {
                    value_end -= 1;
                }
            } else if quoted && ends_with_quote {
                value_end -= 1;
            }
            Arg {
                key: text.get(start..equals).unwrap_or_default(),
                value: Some(
                    text.get(value_start..value_end.max(value_start))
                        .unwrap_or_default(),
                ),
            }
        }
    };
    Some((arg, rest))
}
