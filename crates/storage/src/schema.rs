//! The Diesel schema, written by hand in the portable subset of types that SQLite and PostgreSQL share.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Text,
        token_version -> BigInt,
        chat_count -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    chats (id) {
        id -> Text,
        user_id -> Text,
        title -> Nullable<Text>,
        system_prompt -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        chat_id -> Text,
        role -> Text,
        content -> Text,
        status -> Text,
        model_alias -> Nullable<Text>,
        provider -> Nullable<Text>,
        provider_model -> Nullable<Text>,
        prompt_tokens -> Nullable<Integer>,
        completion_tokens -> Nullable<Integer>,
        content_tokens -> Nullable<Integer>,
        latency_ms -> Nullable<Integer>,
        finish_reason -> Nullable<Text>,
        error_detail -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        cancel_requested -> Bool,
    }
}

diesel::joinable!(chats -> users (user_id));
diesel::joinable!(messages -> chats (chat_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(token_usage -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, chats, messages, refresh_tokens, token_usage);

diesel::table! {
    token_usage (user_id, day) {
        user_id -> Text,
        day -> Text,
        used -> BigInt,
        reserved -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        user_id -> Text,
        family_id -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}
