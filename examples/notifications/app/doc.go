// Package app is the notification pipeline of Python NecroStack
// (examples/notification_pipeline) ported to necro: each request is a
// NOTIFICATION_REQUESTED event that six organs, mounted in the seed's order under the
// seed's names, validate, route to the user's channels, deliver and audit.
//
//	NOTIFICATION_REQUESTED → ValidateOrgan → NOTIFICATION_VALIDATED | NOTIFICATION_FAILED
//	NOTIFICATION_VALIDATED → RouterOrgan   → EMAIL_/SMS_/PUSH_SEND_REQUESTED, one per channel
//	EMAIL_SEND_REQUESTED   → EmailOrgan    → EMAIL_DELIVERED (fails at random on a first attempt)
//	SMS_SEND_REQUESTED     → SmsOrgan      → SMS_DELIVERED (fails permanently for blocked numbers)
//	PUSH_SEND_REQUESTED    → PushOrgan     → PUSH_DELIVERED
//	*_DELIVERED            → AuditOrgan    → DELIVERY_COMPLETED
//
// The package has the shape every bundled app has: [New] reads the input, [App.Mounts]
// and [App.Config] set up a Spine, [App.Roots] are the events to emit, and
// [App.Begin], [App.Report] and [App.Results] present the run. The standalone program
// in the parent directory and the necro-actors CLI both drive it that way. The organs
// keep what they record in the [App], under a mutex, so a report can read it once the
// Spine's run has returned.
package app
