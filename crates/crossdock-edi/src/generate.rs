//! Large valid interchanges for benchmarks and load tests: 850 purchase orders or 846 inventory
//! advices with a given number of line items, the same content as `gen_x12.py` in the peer
//! benchmarks, so figures compare on identical files.

use std::io::Write;

/// Which set to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 850: BEG, REF, DTM, N1, N3, N4, then PO1 + PID per item, CTT.
    PurchaseOrder,
    /// 846: BIA, then LIN + PID + QTY per item, CTT.
    InventoryAdvice,
}

/// Writes one interchange with one group holding `items` line items, `per_set` per transaction
/// set, each segment followed by a line break when `line_breaks`. Returns the bytes written.
pub fn generate(
    out: &mut impl Write,
    kind: Kind,
    items: u64,
    per_set: u64,
    line_breaks: bool,
) -> std::io::Result<u64> {
    let per_set = per_set.max(1);
    let term: &[u8] = if line_breaks { b"~\n" } else { b"~" };
    let mut written = 0u64;
    let mut line = Vec::with_capacity(256);
    let mut seg = |out: &mut dyn Write, line: &mut Vec<u8>| -> std::io::Result<()> {
        line.extend_from_slice(term);
        out.write_all(line)?;
        written += line.len() as u64;
        line.clear();
        Ok(())
    };
    let (set_id, functional_id) = match kind {
        Kind::PurchaseOrder => ("850", "PO"),
        Kind::InventoryAdvice => ("846", "IB"),
    };
    write!(
        line,
        "ISA*00*          *00*          *ZZ*SENDERID       *ZZ*RECEIVERID     *240101*1200*U*00401*000000001*0*P*>"
    )?;
    seg(out, &mut line)?;
    write!(
        line,
        "GS*{functional_id}*SENDERID*RECEIVERID*20240101*1200*1*X*004010"
    )?;
    seg(out, &mut line)?;
    let sets = items.div_ceil(per_set);
    let mut item = 0u64;
    for t in 1..=sets {
        let mut count = 0u64;
        write!(line, "ST*{set_id}*{t:09}")?;
        seg(out, &mut line)?;
        count += 1;
        match kind {
            Kind::PurchaseOrder => {
                let store = t % 500;
                for text in [
                    format!("BEG*00*SA*PO{t:08}**20240101"),
                    "REF*DP*001".to_string(),
                    "DTM*002*20240115".to_string(),
                    format!("N1*ST*SHIP TO STORE {store}*92*{store:04}"),
                    "N3*123 MAIN STREET".to_string(),
                    "N4*ANYTOWN*NY*10001*US".to_string(),
                ] {
                    line.extend_from_slice(text.as_bytes());
                    seg(out, &mut line)?;
                    count += 1;
                }
            }
            Kind::InventoryAdvice => {
                write!(line, "BIA*00*MM*INV{t:08}*20240101")?;
                seg(out, &mut line)?;
                count += 1;
            }
        }
        let mut k = 0u64;
        while k < per_set && item < items {
            item += 1;
            k += 1;
            let upc = 12_345_000_000 + item;
            match kind {
                Kind::PurchaseOrder => {
                    let cents = (item % 1000) + 100;
                    write!(
                        line,
                        "PO1*{k}*{}*EA*{}.{:02}**UP*{upc:012}*VP*SKU-{item:08}",
                        item % 97 + 1,
                        cents / 100,
                        cents % 100
                    )?;
                    seg(out, &mut line)?;
                    write!(line, "PID*F****WIDGET MODEL {item} BLUE")?;
                    seg(out, &mut line)?;
                    count += 2;
                }
                Kind::InventoryAdvice => {
                    write!(line, "LIN**UP*{upc:012}*VP*SKU-{item:08}")?;
                    seg(out, &mut line)?;
                    write!(line, "PID*F****WIDGET MODEL {item} BLUE")?;
                    seg(out, &mut line)?;
                    write!(line, "QTY*33*{}*EA", item % 5000)?;
                    seg(out, &mut line)?;
                    count += 3;
                }
            }
        }
        write!(line, "CTT*{k}")?;
        seg(out, &mut line)?;
        count += 2;
        write!(line, "SE*{count}*{t:09}")?;
        seg(out, &mut line)?;
    }
    write!(line, "GE*{sets}*1")?;
    seg(out, &mut line)?;
    write!(line, "IEA*1*000000001")?;
    seg(out, &mut line)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{SetRead, TypedHandler, read_slice};

    #[derive(Default)]
    struct Count {
        sets: u64,
        items: u64,
        problems: usize,
    }
    impl TypedHandler for Count {
        fn set(&mut self, set: &mut SetRead<'_>) {
            self.sets += 1;
            self.items += set.document.as_ref().map_or(0, |d| d.items() as u64);
            self.problems += set.problems.len();
        }
    }

    #[test]
    fn generated_interchanges_are_valid() {
        for kind in [Kind::PurchaseOrder, Kind::InventoryAdvice] {
            let mut bytes = Vec::new();
            let n = generate(&mut bytes, kind, 1001, 100, true).unwrap();
            assert_eq!(n, bytes.len() as u64);
            let mut count = Count::default();
            let stats = read_slice(&bytes, &mut count);
            assert_eq!((stats.problems, count.problems), (0, 0));
            assert_eq!((count.sets, count.items), (11, 1001));
        }
    }
}
