// Package app is the ETL pipeline of Python NecroStack (necrostack/apps/etl) ported to
// necro: one CSV text goes through four organs, in the seed's order and under the
// seed's names and event types:
//
//	ETL_START{csv_data, source_name}
//	  → ExtractCSV    → RAW_DATA_LOADED{source_name, headers, records, row_count}
//	  → CleanData     → DATA_CLEANED{source_name, headers, records, row_count, removed_count}
//	  → TransformData → DATA_TRANSFORMED{source_name, headers, records, row_count, numeric_stats}
//	  → ExportSummary → ETL_COMPLETE{source_name, row_count}
//
// ExportSummary keeps the summary text in the [App], which [App.Report] prints once the
// run is over. No organ listens to ETL_COMPLETE: a bounded spine.Run handles it as an
// unrouted event (acked and counted in spine.Stats.Unrouted), where the seed's Spine had
// stopped before it.
//
// The package has the shape every bundled app exports (Options, New, Mounts, Config,
// Roots, Begin, Report, Results), so the necro-actors CLI and examples/etl's own main
// drive it the same way. The pipeline has no random failures: Options.RandomFailures and
// Options.Seed are accepted and change nothing.
package app
