//! Tar header blocks: ustar with GNU long-name records, octal and base-256 numbers, pax
//! records.

use super::error::TarError;

/// The tar block size.
pub(super) const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) {
    // Width-1 digits, then NUL.
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    let bytes = s.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// One 512-byte header block.
pub(super) fn header(
    name: &[u8],
    mode: u32,
    size: u64,
    mtime: u64,
    kind: u8,
    link: &[u8],
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put(&mut h[0..100], name);
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    put(&mut h[157..257], link);
    put(&mut h[257..265], b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// The zero bytes that pad `size` bytes of contents to a whole block.
pub(super) fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// Headers for one entry, with GNU long-name records when a name or link is too long.
pub(super) fn entry_headers(
    name: &[u8],
    mode: u32,
    size: u64,
    mtime: u64,
    kind: u8,
    link: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    for (data, k) in [(link, b'K'), (name, b'L')] {
        if data.len() >= 100 {
            let mut long = data.to_vec();
            long.push(0);
            out.extend_from_slice(&header(
                b"././@LongLink",
                0o644,
                long.len() as u64,
                0,
                k,
                b"",
            ));
            let pad = padding(long.len() as u64);
            out.extend_from_slice(&long);
            out.extend(std::iter::repeat_n(0u8, pad));
        }
    }
    out.extend_from_slice(&header(name, mode, size, mtime, kind, link));
    out
}

/// A number field: octal, or GNU base-256 for big values.
pub(super) fn parse_octal(field: &[u8]) -> Result<u64, TarError> {
    // GNU base-256 for big sizes.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or(TarError::Overflow)?;
        }
        return Ok(v);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| TarError::BadNumber(s.to_string()))
}

/// A NUL-terminated field.
pub(super) fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().take_while(|b| **b != 0).copied().collect()
}

/// `len key=value\n` records of a pax header.
pub(super) fn parse_pax(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Ok(len) = std::str::from_utf8(&rest[..sp])
            .unwrap_or("")
            .parse::<usize>()
        else {
            break;
        };
        if len == 0 || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        }
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_numbers() {
        let h = header(b"a.txt", 0o755, 1234, 0, b'0', b"");
        let stored = parse_octal(&h[148..156]).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
        assert_eq!(stored, sum);
        assert_eq!(parse_octal(&h[124..136]).unwrap(), 1234);
        assert_eq!(parse_octal(&h[100..108]).unwrap(), 0o755);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
        let long = "d/".repeat(80);
        let hs = entry_headers(long.as_bytes(), 0o644, 0, 0, b'5', b"");
        assert_eq!(hs.len() % BLOCK, 0);
        assert_eq!(hs[156], b'L');
        assert_eq!(
            parse_pax(b"16 path=abc/def\n"),
            vec![(b"path".to_vec(), b"abc/def".to_vec())]
        );
    }
}
