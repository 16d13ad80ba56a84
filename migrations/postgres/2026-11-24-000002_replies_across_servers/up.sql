-- A chat with several replies left generating (a crash of an older version) keeps only its newest so,
-- for the index below.
UPDATE messages SET status = 'interrupted'
WHERE status = 'generating'
  AND id NOT IN (SELECT MAX(id) FROM messages WHERE status = 'generating' GROUP BY chat_id);

-- One reply is generated per chat at a time, whichever server runs it: the database decides.
-- (It also finds the replies left generating for the start-up and lease recoveries.)
CREATE UNIQUE INDEX messages_one_generating_per_chat ON messages (chat_id) WHERE status = 'generating';

-- Stop asked for on a server other than the one generating the reply; that one looks at every flush.
ALTER TABLE messages ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
