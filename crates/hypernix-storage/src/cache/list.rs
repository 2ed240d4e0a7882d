//! An ordered set with O(1) push to the front, removal and pop from the back: the
//! recency list under every policy in this module.

use std::collections::HashMap;
use std::hash::Hash;

const NIL: u32 = u32::MAX;

struct Node<K> {
    key: K,
    prev: u32,
    next: u32,
}

/// Keys from most recently used (front) to least (back).
pub(crate) struct LruList<K> {
    index: HashMap<K, u32>,
    nodes: Vec<Node<K>>,
    spare: Vec<u32>,
    head: u32,
    tail: u32,
}

impl<K: Hash + Eq + Copy> LruList<K> {
    /// An empty list.
    pub fn new() -> Self {
        LruList {
            index: HashMap::new(),
            nodes: Vec::new(),
            spare: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `key` is in the list.
    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.nodes[i as usize].prev, self.nodes[i as usize].next);
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    /// Puts `key` at the front, moving it there if present.
    pub fn push_front(&mut self, key: K) {
        let i = match self.index.get(&key) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None => {
                let node = Node {
                    key,
                    prev: NIL,
                    next: NIL,
                };
                let i = match self.spare.pop() {
                    Some(i) => {
                        self.nodes[i as usize] = node;
                        i
                    }
                    None => {
                        self.nodes.push(node);
                        (self.nodes.len() - 1) as u32
                    }
                };
                self.index.insert(key, i);
                i
            }
        };
        self.nodes[i as usize].prev = NIL;
        self.nodes[i as usize].next = self.head;
        if self.head != NIL {
            self.nodes[self.head as usize].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.index.remove(key) {
            Some(i) => {
                self.unlink(i);
                self.spare.push(i);
                true
            }
            None => false,
        }
    }

    /// The least recently used key, without removing it.
    pub fn back(&self) -> Option<K> {
        (self.tail != NIL).then(|| self.nodes[self.tail as usize].key)
    }

    /// Removes and returns the least recently used key.
    pub fn pop_back(&mut self) -> Option<K> {
        let key = self.back()?;
        self.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recency_order() {
        let mut l = LruList::new();
        for k in [1, 2, 3] {
            l.push_front(k);
        }
        l.push_front(1);
        assert_eq!(l.back(), Some(2));
        assert!(l.remove(&3));
        assert!(!l.remove(&3));
        assert_eq!(l.pop_back(), Some(2));
        assert_eq!(l.pop_back(), Some(1));
        assert_eq!(l.pop_back(), None);
        l.push_front(7);
        assert_eq!((l.len(), l.back()), (1, Some(7)));
    }
}
