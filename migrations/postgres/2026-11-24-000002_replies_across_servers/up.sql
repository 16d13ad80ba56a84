-- One reply is generated per chat at a time, whichever server runs it: the database decides.
-- (It also finds the replies left generating for the start-up and lease recoveries.)
CREATE UNIQUE INDEX messages_one_generating_per_chat ON messages (chat_id) WHERE status = 'generating';

-- Stop asked for on a server other than the one generating the reply; that one looks at every flush.
ALTER TABLE messages ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
