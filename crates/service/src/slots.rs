//! One generation per chat at a time: a slot taken before the user message is stored, freed when the reply is done.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chat_domain::ChatId;

/// The chats with a reply being generated in this process.
#[derive(Debug, Clone, Default)]
pub struct GenerationSlots {
    busy: Arc<Mutex<HashSet<ChatId>>>,
}

/// Holds a chat's slot; dropping it frees the slot, whatever way the generation ended.
#[derive(Debug)]
pub struct SlotGuard {
    slots: GenerationSlots,
    chat_id: ChatId,
}

impl GenerationSlots {
    /// The chat's slot, or `None` when a reply is already being generated there.
    pub fn try_acquire(&self, chat_id: ChatId) -> Option<SlotGuard> {
        let mut busy = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        busy.insert(chat_id).then(|| SlotGuard { slots: self.clone(), chat_id })
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut busy = self.slots.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        busy.remove(&self.chat_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_chat_until_dropped() {
        let slots = GenerationSlots::default();
        let (a, b) = (ChatId::new_random(), ChatId::new_random());
        let held = slots.try_acquire(a).unwrap();
        assert!(slots.try_acquire(a).is_none());
        assert!(slots.try_acquire(b).is_some(), "other chats are free");
        drop(held);
        assert!(slots.try_acquire(a).is_some());
    }
}
