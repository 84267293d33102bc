-- Event data and metadata as json instead of jsonb (#11). Never edit once applied.
--
-- The store never looks inside either column: it writes the text the domain encoded and
-- hands the same text back to readers, which decode it into their own types. jsonb parsed
-- every event into its binary form on insert and printed it back to text on every read:
-- loading a 1,000-event stream spent about half of its server time printing `data` and
-- `metadata` (measured with pgbench on the issue's W3 query, 6.0 ms against 2.4-2.7 ms for
-- the same rows without metadata and the columns a load does not need). json keeps the text
-- as written after checking once that it is JSON; `->`, `->>` and `json_array_elements`
-- still reach inside for ad-hoc queries.
--
-- This rewrites the events table once, under an exclusive lock, for as long as that takes.
alter table events
    alter column data type json using data::json,
    alter column metadata type json using metadata::json;
