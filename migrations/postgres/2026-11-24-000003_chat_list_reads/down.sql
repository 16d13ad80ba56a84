ALTER TABLE users DROP COLUMN chat_count;
CREATE INDEX chats_user_id_updated_at ON chats (user_id, updated_at);
DROP INDEX chats_user_id_updated_at_id;
