DROP INDEX messages_chat_id_id;
DROP TABLE messages;
DROP INDEX chats_user_id_updated_at;
DROP TABLE chats;
DROP TABLE users;
