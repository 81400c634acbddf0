// Package app is the Séance of Python NecroStack (necrostack/apps/seance) ported to
// necro: a ritual goes through four organs, in the seed's order and under the seed's
// names and event types:
//
//	SUMMON_RITUAL{ritual, spirit_name, question}
//	  → SummonSpirit      → SPIRIT_APPEARED{spirit_name, summoned_by, message, question}
//	  → AskQuestion       → ANSWER_GENERATED{spirit_name, question, answer}
//	  → InterpretResponse → OMEN_REVEALED{spirit_name, original_answer, omen, interpretation}
//	  → ManifestEffect    → SEANCE_COMPLETE{spirit_name, omen}
//
// SPIRIT_APPEARED carries the question, which the seed dropped there (so every spirit
// answered the default question). ManifestEffect keeps the séance's output in the
// [App], which [App.Report] prints once the run is over. No organ listens to
// SEANCE_COMPLETE: a bounded spine.Run handles it as an unrouted event (acked and
// counted in spine.Stats.Unrouted), where the seed's Spine had stopped before it.
//
// The package has the shape every bundled app exports (Options, New, Mounts, Config,
// Roots, Begin, Report, Results), so the necro-actors CLI and examples/seance's own
// main drive it the same way; [NewFromRitual] and [Ritual] let a program give the
// ritual without a file. The séance has no random failures: Options.RandomFailures
// and Options.Seed are accepted and change nothing.
package app
