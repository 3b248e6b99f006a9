//! `List`: a short list kept inline. A line's item ids or quantities are almost always one or
//! two, so keeping two inline saves an allocation per line when a large file is read.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

/// How many items a [`List`] keeps without allocating.
const INLINE: usize = 2;

#[derive(Clone, PartialEq, Eq)]
enum Repr<T> {
    Inline(u8, [T; INLINE]),
    Heap(Vec<T>),
}

/// A list of `T`, inline up to two items; reads as a slice.
#[derive(Clone, PartialEq, Eq)]
pub struct List<T: Default>(Repr<T>);

impl<T: Default> List<T> {
    pub fn new() -> Self {
        List(Repr::Inline(0, Default::default()))
    }

    pub fn push(&mut self, item: T) {
        match &mut self.0 {
            Repr::Inline(len, items) if usize::from(*len) < INLINE => {
                items[usize::from(*len)] = item;
                *len += 1;
            }
            Repr::Inline(_, items) => {
                let mut heap: Vec<T> = std::mem::take(items).into_iter().collect();
                heap.push(item);
                self.0 = Repr::Heap(heap);
            }
            Repr::Heap(heap) => heap.push(item),
        }
    }

    pub fn clear(&mut self) {
        *self = List::new();
    }
}

impl<T: Default> Default for List<T> {
    fn default() -> Self {
        List::new()
    }
}

impl<T: Default> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Inline(len, items) => &items[..usize::from(*len)],
            Repr::Heap(heap) => heap,
        }
    }
}

impl<'a, T: Default> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Default> FromIterator<T> for List<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = List::new();
        for item in iter {
            list.push(item);
        }
        list
    }
}

impl<T: Default> From<Vec<T>> for List<T> {
    fn from(items: Vec<T>) -> Self {
        if items.len() > INLINE {
            List(Repr::Heap(items))
        } else {
            items.into_iter().collect()
        }
    }
}

impl<T: Default + fmt::Debug> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Default + Serialize> Serialize for List<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_back_inline_and_spilled() {
        for n in 0..6 {
            let items: Vec<u32> = (0..n).collect();
            let list: List<u32> = items.iter().copied().collect();
            assert_eq!(&*list, &items[..]);
            assert_eq!(List::from(items.clone()), list);
            assert_eq!(format!("{list:?}"), format!("{items:?}"));
        }
    }
}
