//! An in-memory [`EventLog`] for the bus's tests.

use crate::event::{Event, NewEvent};
use crate::log::{EventLog, LogError};
use chrono::Utc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Events in a vector; counts reads and can be told to fail them.
#[derive(Default)]
pub struct MemoryLog {
    events: Mutex<Vec<Event>>,
    reads: AtomicUsize,
    fail_reads: AtomicBool,
}

impl MemoryLog {
    /// How many times `read_from` has been called.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Makes every later `read_from` fail.
    pub fn fail_reads(&self) {
        self.fail_reads.store(true, Ordering::SeqCst);
    }
}

impl EventLog for MemoryLog {
    fn append(&self, event: NewEvent) -> Result<Event, LogError> {
        let mut events = self.events.lock().unwrap();
        let id = events.last().map_or(1, |last| last.id + 1);
        let event = event.into_event(id, Utc::now());
        events.push(event.clone());
        Ok(event)
    }

    fn read_from(&self, after_id: Option<u64>, limit: usize) -> Result<Vec<Event>, LogError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(LogError::new("disk on fire"));
        }
        let events = self.events.lock().unwrap();
        let after = after_id.unwrap_or(0);
        Ok(events
            .iter()
            .filter(|event| event.id > after)
            .take(limit)
            .cloned()
            .collect())
    }

    fn last_id(&self) -> Result<Option<u64>, LogError> {
        Ok(self.events.lock().unwrap().last().map(|event| event.id))
    }
}
