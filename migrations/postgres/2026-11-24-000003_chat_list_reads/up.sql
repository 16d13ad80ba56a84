-- The chat list reads one page and a count, whatever the number of chats.
-- Its order is (updated_at, id), newest first: with id in the index the page is read in index order
-- instead of sorting every chat of the user on each request.
CREATE INDEX chats_user_id_updated_at_id ON chats (user_id, updated_at, id);
DROP INDEX chats_user_id_updated_at;
-- The exact number of a user's chats, kept by the statements that add and delete chats, instead of a
-- count over all of them on every page.
ALTER TABLE users ADD COLUMN chat_count BIGINT NOT NULL DEFAULT 0;
UPDATE users SET chat_count = (SELECT COUNT(*) FROM chats WHERE chats.user_id = users.id);
