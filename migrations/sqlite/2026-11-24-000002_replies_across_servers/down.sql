ALTER TABLE messages DROP COLUMN cancel_requested;
DROP INDEX messages_one_generating_per_chat;
