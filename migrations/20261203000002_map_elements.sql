-- Map elements of a workspace (WorkspaceElementController), by group; the groups are the same three
-- in every workspace (shared::domain::map_element::GROUPS).
CREATE TABLE rm_map_elements
(
    element_id   text PRIMARY KEY,
    workspace_id text        NOT NULL,
    group_id     text        NOT NULL,
    name         text        NOT NULL,
    element_type int         NOT NULL,
    user_name    text        NOT NULL,
    content      jsonb       NOT NULL,
    create_time  timestamptz NOT NULL,
    update_time  timestamptz NOT NULL
);
CREATE INDEX rm_map_elements_group ON rm_map_elements (workspace_id, group_id, create_time);
