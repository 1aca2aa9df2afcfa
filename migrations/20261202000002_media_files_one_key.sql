-- A media file's id is derived from its workspace and fingerprint (`media::file_id`), so the primary
-- key already admits one row per (workspace_id, fingerprint): the second unique index on that pair
-- cost every projected upload one more index write and answered no query the primary key cannot
-- (fast-upload looks the file up by its id).
ALTER TABLE rm_media_files DROP CONSTRAINT rm_media_files_workspace_id_fingerprint_key;
