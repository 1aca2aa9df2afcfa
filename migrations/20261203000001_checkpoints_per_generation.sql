-- Checkpoints belong to a generation of their projection. A rebuild writes the new generation's
-- into key space of their own, with no dead rows of the old generation in the way of its inserts,
-- and deletes the old generation's once it has committed.
ALTER TABLE projection_checkpoints ADD COLUMN generation bigint NOT NULL DEFAULT 0;
UPDATE projection_checkpoints c SET generation = p.generation FROM projections p WHERE p.name = c.projection;
ALTER TABLE projection_checkpoints ALTER COLUMN generation DROP DEFAULT;
ALTER TABLE projection_checkpoints DROP CONSTRAINT projection_checkpoints_pkey;
ALTER TABLE projection_checkpoints ADD PRIMARY KEY (projection, generation, aggregate_type, aggregate_id);
