// PostGraphile v5 for bench/bench_peers.py: the Amber preset over the benchmark's database,
// its name-based relations declared as smart tags in postgraphile.tags.json5 (the database
// itself is left as it is). DATABASE_URL and PORT come from the benchmark.
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { TagsFilePlugin } from "postgraphile/utils";

export default {
  extends: [PostGraphileAmberPreset],
  plugins: [TagsFilePlugin],
  // Order and filter by any column (names, deleted_at), as our API does, not only indexed
  // ones: without this PostGraphile would need indexes the database does not have.
  disablePlugins: ["PgIndexBehaviorsPlugin"],
  pgServices: [
    makePgService({ connectionString: process.env.DATABASE_URL, schemas: ["public"] }),
  ],
  grafserv: { host: "127.0.0.1", port: Number(process.env.PORT) },
  grafast: { explain: false },
};
