package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/necrostack/necro"
)

// Event types, as the seed names them.
const (
	typeSummon   = "SUMMON_RITUAL"
	typeAppeared = "SPIRIT_APPEARED"
	typeAnswered = "ANSWER_GENERATED"
	typeOmen     = "OMEN_REVEALED"
	typeComplete = "SEANCE_COMPLETE"
)

// The seed's defaults for a field a payload lacks.
const (
	summonedSpirit  = "Ancient One"    // SummonSpirit's spirit_name
	unknownSpirit   = "Unknown Spirit" // the later organs' spirit_name
	unknownRitual   = "unknown ritual"
	defaultQuestion = "What wisdom do you bring?"
	noOmen          = "No omen revealed"
)

// The seed's fixed texts.
const (
	spiritReply = "The path you seek lies within shadows and light."
	advice      = "The spirits suggest patience and vigilance."
	rule        = "=================================================="
	// basedOnRunes is how much of the answer the interpretation quotes, in code points
	// as Python's answer[:50] counts them.
	basedOnRunes = 50
)

// appeared is the payload of SPIRIT_APPEARED. Question is forwarded from the ritual
// when it has one, and left out otherwise, so that AskQuestion's default applies.
type appeared struct {
	SpiritName string  `json:"spirit_name"`
	SummonedBy string  `json:"summoned_by"`
	Message    string  `json:"message"`
	Question   *string `json:"question,omitempty"`
}

// answered is the payload of ANSWER_GENERATED.
type answered struct {
	SpiritName string `json:"spirit_name"`
	Question   string `json:"question"`
	Answer     string `json:"answer"`
}

// omen is the payload of OMEN_REVEALED.
type omen struct {
	SpiritName     string `json:"spirit_name"`
	OriginalAnswer string `json:"original_answer"`
	Omen           string `json:"omen"`
	Interpretation string `json:"interpretation"`
}

// completion is the payload of SEANCE_COMPLETE.
type completion struct {
	SpiritName string `json:"spirit_name"`
	Omen       string `json:"omen"`
}

// decode reads ev's payload into v. A payload the organ cannot read (a field that is
// not a string) fails permanently: handling it again would fail the same way.
func decode(ev necro.Event, v any) error {
	dec := json.NewDecoder(bytes.NewReader(ev.PayloadJSON()))
	if err := dec.Decode(v); err != nil {
		return necro.Permanent(fmt.Errorf("read %s payload: %w", ev.Type(), err))
	}
	return nil
}

// or returns *s, or def when the field was missing or null (Python's
// payload.get(key, def), which differs only for null, where the seed got None).
func or(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

// emit returns the one event an organ emits. An event that cannot be built (a payload
// past necro.MaxPayloadBytes) fails permanently: the same input would fail again.
func emit(typ string, payload any) ([]necro.Event, error) {
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		return nil, necro.Permanent(fmt.Errorf("emit %s: %w", typ, err))
	}
	return []necro.Event{ev}, nil
}

// summonSpirit is the SummonSpirit organ: SUMMON_RITUAL → SPIRIT_APPEARED. It passes
// the ritual's question on, which the seed did not.
func (a *App) summonSpirit(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		Ritual     *string `json:"ritual"`
		SpiritName *string `json:"spirit_name"`
		Question   *string `json:"question"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	ritual, spirit := or(in.Ritual, unknownRitual), or(in.SpiritName, summonedSpirit)
	a.log.InfoContext(ctx, "spirit summoned", slog.String("spirit", spirit), slog.String("ritual", ritual))
	return emit(typeAppeared, appeared{
		SpiritName: spirit,
		SummonedBy: ritual,
		Message:    fmt.Sprintf("The spirit '%s' has been summoned through %s.", spirit, ritual),
		Question:   in.Question,
	})
}

// askQuestion is the AskQuestion organ: SPIRIT_APPEARED → ANSWER_GENERATED.
func (a *App) askQuestion(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		SpiritName *string `json:"spirit_name"`
		Question   *string `json:"question"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	spirit, question := or(in.SpiritName, unknownSpirit), or(in.Question, defaultQuestion)
	a.log.InfoContext(ctx, "question asked", slog.String("spirit", spirit), slog.String("question", question))
	return emit(typeAnswered, answered{
		SpiritName: spirit,
		Question:   question,
		Answer:     fmt.Sprintf("The %s speaks in response to '%s': '%s'", spirit, question, spiritReply),
	})
}

// interpretResponse is the InterpretResponse organ: ANSWER_GENERATED → OMEN_REVEALED.
func (a *App) interpretResponse(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		SpiritName *string `json:"spirit_name"`
		Answer     *string `json:"answer"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	spirit, answer := or(in.SpiritName, unknownSpirit), or(in.Answer, "")
	a.log.InfoContext(ctx, "response interpreted", slog.String("spirit", spirit))
	return emit(typeOmen, omen{
		SpiritName:     spirit,
		OriginalAnswer: answer,
		Omen:           fmt.Sprintf("The words of %s foretell: A great change approaches.", spirit),
		Interpretation: interpret(answer),
	})
}

// interpret is the seed's interpretation of an answer: the advice alone for an empty
// answer, else the advice and the answer's first 50 code points, with "..." when it
// has more.
func interpret(answer string) string {
	if answer == "" {
		return advice
	}
	quote, more := answer, ""
	if runes := []rune(answer); len(runes) > basedOnRunes {
		quote, more = string(runes[:basedOnRunes]), "..."
	}
	return fmt.Sprintf("%s (Based on: %s%s)", advice, quote, more)
}

// manifestEffect is the ManifestEffect organ: OMEN_REVEALED → SEANCE_COMPLETE. It
// writes the seed's output block and keeps it in the App for [App.Report].
func (a *App) manifestEffect(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		SpiritName     *string `json:"spirit_name"`
		OriginalAnswer *string `json:"original_answer"`
		Omen           *string `json:"omen"`
		Interpretation *string `json:"interpretation"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	s := seance{
		SpiritName:     or(in.SpiritName, unknownSpirit),
		Answer:         or(in.OriginalAnswer, ""),
		Omen:           or(in.Omen, noOmen),
		Interpretation: or(in.Interpretation, ""),
	}
	s.Output = strings.Join([]string{"", rule, "🔮 SÉANCE COMPLETE 🔮", rule,
		"Spirit: " + s.SpiritName, "Omen: " + s.Omen, "Interpretation: " + s.Interpretation, rule, ""}, "\n")

	a.mu.Lock()
	a.seances = append(a.seances, s)
	a.mu.Unlock()
	a.log.InfoContext(ctx, "effect manifested", slog.String("spirit", s.SpiritName))
	return emit(typeComplete, completion{SpiritName: s.SpiritName, Omen: s.Omen})
}
