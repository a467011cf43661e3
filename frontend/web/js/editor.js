// The spec editor: CodeMirror 6 with YAML highlighting, history, search,
// completion and lint markers. The Rust app owns validation and completion
// (both run in WASM); this file only wires them into CodeMirror. Bracket
// matching, auto-closed brackets and rectangular selection are left out:
// YAML specs hardly use brackets, and the bytes count against the budget.
import { EditorState } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, drawSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  syntaxHighlighting, defaultHighlightStyle, indentOnInput, indentUnit,
  StreamLanguage,
} from "@codemirror/language";
import { searchKeymap, highlightSelectionMatches, search } from "@codemirror/search";
import { autocompletion, completionKeymap } from "@codemirror/autocomplete";
import { lintGutter, lintKeymap, setDiagnostics } from "@codemirror/lint";
// The stream-mode YAML highlighter: a tenth of the size of the Lezer
// grammar, and kiln validates in WASM anyway.
import { yaml } from "@codemirror/legacy-modes/mode/yaml";

// complete(text, pos) returns JSON {from, options} or undefined.
function completionSource(complete) {
  return (context) => {
    const line = context.state.doc.lineAt(context.pos);
    const before = line.text.slice(0, context.pos - line.from);
    const word = context.matchBefore(/[\w.\/-]+$/);
    if (!context.explicit && !word && !/(:|-|\[|,) $/.test(before)) return null;
    const json = complete(context.state.doc.toString(), context.pos);
    if (!json) return null;
    const r = JSON.parse(json);
    return {
      from: r.from,
      options: r.options.map((o) => ({
        label: o.label, type: o.type, apply: o.apply, detail: o.detail, info: o.info,
      })),
      validFor: /^[\w.\/-]*$/,
    };
  };
}

// Creates an editor in `parent`. `onChange(text)` runs after every edit.
export function create(parent, doc, onChange, complete) {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(),
        drawSelection(), EditorState.allowMultipleSelections.of(true),
        indentOnInput(), indentUnit.of("  "), EditorState.tabSize.of(2),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }), highlightActiveLine(),
        highlightSelectionMatches(), search({ top: true }), StreamLanguage.define(yaml), lintGutter(),
        autocompletion({ override: [completionSource(complete)], activateOnTyping: true }),
        keymap.of([
          ...defaultKeymap, ...searchKeymap, ...historyKeymap,
          ...completionKeymap, ...lintKeymap, indentWithTab,
        ]),
        EditorView.contentAttributes.of({ "aria-label": "Spec (YAML)", "aria-multiline": "true" }),
        EditorView.updateListener.of((u) => { if (u.docChanged) onChange(u.state.doc.toString()); }),
      ],
    }),
  });
  return view;
}

// markers: JSON array of {from, to, severity, message, source}.
export function showMarkers(view, json) {
  const diagnostics = JSON.parse(json).map((m) => ({
    from: m.from, to: m.to, severity: m.severity, message: m.message, source: m.source,
  }));
  view.dispatch(setDiagnostics(view.state, diagnostics));
}

export function text(view) { return view.state.doc.toString(); }

export function replace(view, doc) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: doc } });
}

// Puts the cursor at a UTF-16 offset, scrolls there and focuses.
export function jump(view, pos) {
  const at = Math.min(pos, view.state.doc.length);
  view.dispatch({ selection: { anchor: at }, scrollIntoView: true });
  view.focus();
}

export function destroy(view) { view.destroy(); }
