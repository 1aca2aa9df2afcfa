-- The default workspace and its two accounts, as events, so that DJI's web client (adminPC/adminPC)
-- and DJI Pilot 2 (pilot/pilot123) can log in on a new installation, and so that the seed is part of
-- the history that projections rebuild from. Passwords are argon2id hashes, never plain text.
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
VALUES ('workspace', 'e3dea0f5-37f2-4d79-ae58-490af3228069', 1, 'WorkspaceCreated', '1.0',
        '{"WorkspaceCreated": {"workspace_id": "e3dea0f5-37f2-4d79-ae58-490af3228069", "workspace_name": "Test Group One", "workspace_desc": "Cloud Sample Test Platform", "platform_name": "Cloud Api Platform", "bind_code": "qwe"}}',
        '{"source": "seed"}'),
       ('user', 'a1559e7c-8dd8-4780-b952-100cc4797da2', 1, 'UserCreated', '1.0',
        '{"UserCreated": {"user_id": "a1559e7c-8dd8-4780-b952-100cc4797da2", "username": "adminPC", "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$xfnWI1G7rga2oRoHPKKltQ$WS0BGK5NmP3qkM2SoV9/hrJW+TzJEXzCii7kNj3GEHw", "workspace_id": "e3dea0f5-37f2-4d79-ae58-490af3228069", "user_type": 1, "mqtt_username": "admin", "mqtt_password": "admin"}}',
        '{"source": "seed"}'),
       ('user', 'be7c6c3d-afe9-4be4-b9eb-c55066c0914e', 1, 'UserCreated', '1.0',
        '{"UserCreated": {"user_id": "be7c6c3d-afe9-4be4-b9eb-c55066c0914e", "username": "pilot", "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$k26PZ6kmFkBVliyVlpYwNw$YWo+LFQoVt3DYSl4je2IATJ8K0utOoygUTIbVe/FbX0", "workspace_id": "e3dea0f5-37f2-4d79-ae58-490af3228069", "user_type": 2, "mqtt_username": "pilot", "mqtt_password": "pilot123"}}',
        '{"source": "seed"}');
