//! Hangar's integration tests: the whole system started in this process (or as a child process)
//! against the real PostgreSQL, NATS JetStream and object storage, driven through HTTP as DJI's
//! clients drive it. Each test has its own database, NATS prefix and storage folder.

mod auth;
mod bridge_replicas;
mod commands;
mod device_logs;
mod devices;
mod drc;
mod durability;
mod event_store;
mod export;
mod firmware;
mod flight_area;
mod helpers;
mod history;
mod live;
mod map;
mod media;
mod observability;
mod openapi;
mod readiness;
mod replay;
mod replicas;
mod s3;
mod storage;
mod wayline_file;
mod wayline_job;
mod weather;
