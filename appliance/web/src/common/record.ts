// A patient's clinical record as the hospital's systems fed it (GET
// /api/v1/patients/{id}/record): loaded once per patient, one timeline built from it, and each
// analyte's trend fetched when asked for. State lives here (Pinia), for the centre and the
// mobile app alike.
import { defineStore } from 'pinia';
import { ref } from 'vue';
import { api } from './api/client';
import { type Problem, problemOf } from './api/problem';
import type { paths } from './api/schema';

export type ClinicalRecord =
  paths['/api/v1/patients/{id}/record']['get']['responses']['200']['content']['application/json'];
export type Lab = ClinicalRecord['labs'][number];
export type Study =
  paths['/api/v1/patients/{id}/studies']['get']['responses']['200']['content']['application/json']['items'][number];
export type Trend =
  paths['/api/v1/patients/{id}/labs/trend']['get']['responses']['200']['content']['application/json'];

/** One entry of the timeline: what it is, when, and the row it stands for. */
export type Entry =
  | { kind: 'encounter'; time: number; item: ClinicalRecord['encounters'][number] }
  | { kind: 'panel'; time: number; item: { order: number | null; name: string; labs: Lab[] } }
  | { kind: 'report'; time: number; item: ClinicalRecord['exam_reports'][number] }
  | { kind: 'document'; time: number; item: ClinicalRecord['documents'][number] }
  | { kind: 'diagnosis'; time: number; item: ClinicalRecord['diagnoses'][number] }
  | { kind: 'study'; time: number; item: Study & { id: string } };

/** A DICOM date (YYYYMMDD) as ms at midnight UTC+8; 0 when it is not one. */
export function studyTime(date: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(date);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) - 8 * 3_600_000 : 0;
}

/** A time (ms since the epoch) as the page's language writes it; '' when unknown. */
export function when(ms: number | null | undefined, locale: string): string {
  if (ms === null || ms === undefined) return '';
  return new Date(ms).toLocaleString(locale === 'en' ? 'en-GB' : 'zh-CN', {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
  });
}

/** High is red and low is blue on every record screen; the arrow says it without colour. */
export function abnormalMark(abnormal: string): { arrow: string; tone: 'high' | 'low' | 'other' | '' } {
  if (abnormal === 'H' || abnormal === 'HH') return { arrow: abnormal === 'HH' ? '↑↑' : '↑', tone: 'high' };
  if (abnormal === 'L' || abnormal === 'LL') return { arrow: abnormal === 'LL' ? '↓↓' : '↓', tone: 'low' };
  if (abnormal) return { arrow: '*', tone: 'other' };
  return { arrow: '', tone: '' };
}

/** The record as one timeline, newest first: lab results grouped into their order's panel, and
 *  the patient's imaging studies among them. */
export function timeline(r: ClinicalRecord, studies: Study[] = []): Entry[] {
  const out: Entry[] = [];
  for (const s of studies) out.push({ kind: 'study', time: studyTime(s.date), item: { ...s, id: s.uid } });
  for (const e of r.encounters) out.push({ kind: 'encounter', time: e.admitted_at ?? e.provenance.received_at, item: e });
  const panels = new Map<string, { order: number | null; name: string; labs: Lab[]; time: number }>();
  const orderName = new Map(r.orders.map((o) => [o.id, o.name]));
  for (const l of r.labs) {
    const key = l.order === null ? `lab-${l.id}` : `order-${l.order}`;
    const time = l.observed_at ?? l.provenance.received_at;
    const p = panels.get(key);
    if (p) {
      p.labs.push(l);
      p.time = Math.max(p.time, time);
    } else {
      panels.set(key, { order: l.order, name: (l.order !== null && orderName.get(l.order)) || l.name, labs: [l], time });
    }
  }
  for (const p of panels.values()) {
    p.labs.sort((a, b) => a.id - b.id);
    out.push({ kind: 'panel', time: p.time, item: { order: p.order, name: p.name, labs: p.labs } });
  }
  for (const x of r.exam_reports) out.push({ kind: 'report', time: x.observed_at ?? x.provenance.received_at, item: x });
  for (const d of r.documents) out.push({ kind: 'document', time: d.time ?? d.provenance.received_at, item: d });
  for (const d of r.diagnoses) out.push({ kind: 'diagnosis', time: d.time ?? d.provenance.received_at, item: d });
  return out.sort((a, b) => b.time - a.time);
}

/** One item of the record an application can share (`key` is what the API takes: `kind:id`,
 *  a lab by its analyte code, which shares its whole series and trend). */
export interface Shareable {
  key: string;
  kind: 'lab' | 'exam_report' | 'document' | 'diagnosis' | 'encounter' | 'order';
  title: string;
  detail: string;
  time: number;
  abnormal: string;
}

/** The record as the items an applicant may tick, grouped by kind, newest first within each;
 *  lab results one item per analyte (with how many results and the newest). */
export function shareable(r: ClinicalRecord): Shareable[] {
  const out: Shareable[] = [];
  const analytes = new Map<string, { labs: Lab[] }>();
  for (const l of r.labs) {
    const a = analytes.get(l.code);
    if (a) a.labs.push(l);
    else analytes.set(l.code, { labs: [l] });
  }
  const time = (l: Lab) => l.observed_at ?? l.provenance.received_at;
  for (const [code, { labs }] of analytes) {
    const newest = labs.reduce((a, b) => (time(b) > time(a) ? b : a));
    const flagged = labs.some((l) => l.abnormal !== '');
    out.push({
      key: `lab:${code}`,
      kind: 'lab',
      title: newest.name || code,
      detail: `${labs.length} × · ${newest.value} ${newest.unit}`.trim(),
      time: time(newest),
      abnormal: flagged ? newest.abnormal || '*' : '',
    });
  }
  for (const x of r.exam_reports)
    out.push({ key: `exam_report:${x.id}`, kind: 'exam_report', title: x.name, detail: x.kind, time: x.observed_at ?? x.provenance.received_at, abnormal: '' });
  for (const d of r.documents)
    out.push({ key: `document:${d.id}`, kind: 'document', title: d.title, detail: d.kind, time: d.time ?? d.provenance.received_at, abnormal: '' });
  for (const d of r.diagnoses)
    out.push({ key: `diagnosis:${d.id}`, kind: 'diagnosis', title: `${d.code} ${d.name}`.trim(), detail: d.kind, time: d.time ?? d.provenance.received_at, abnormal: '' });
  for (const e of r.encounters)
    out.push({ key: `encounter:${e.id}`, kind: 'encounter', title: [e.department, e.location].filter(Boolean).join(' '), detail: e.class, time: e.admitted_at ?? e.provenance.received_at, abnormal: '' });
  for (const o of r.orders)
    out.push({ key: `order:${o.id}`, kind: 'order', title: o.name, detail: o.kind, time: o.ordered_at ?? o.provenance.received_at, abnormal: '' });
  const rank = ['lab', 'exam_report', 'document', 'diagnosis', 'encounter', 'order'];
  return out.sort((a, b) => rank.indexOf(a.kind) - rank.indexOf(b.kind) || b.time - a.time);
}

export const useRecord = defineStore('record', () => {
  const patient = ref<number | null>(null);
  const record = ref<ClinicalRecord | null>(null);
  const studies = ref<Study[]>([]);
  const problem = ref<Problem | null>(null);
  const loading = ref(false);

  async function load(id: number): Promise<void> {
    loading.value = true;
    problem.value = null;
    if (patient.value !== id) {
      record.value = null;
      studies.value = [];
    }
    patient.value = id;
    try {
      // The record and the images the data centre holds (imaging may be away: then none),
      // asked together and shown together, so the timeline does not change under the reader.
      const [got, found] = await Promise.all([
        api.GET('/api/v1/patients/{id}/record', { params: { path: { id } } }),
        api.GET('/api/v1/patients/{id}/studies', { params: { path: { id } } }),
      ]);
      studies.value = found.data?.items ?? [];
      if (got.data) record.value = got.data;
      else problem.value = problemOf(got.error, got.response.status);
    } catch {
      problem.value = problemOf(null);
    } finally {
      loading.value = false;
    }
  }

  async function trend(code: string): Promise<Trend | Problem> {
    const id = patient.value;
    if (id === null) return problemOf(null);
    try {
      const { data, error, response } = await api.GET('/api/v1/patients/{id}/labs/trend', {
        params: { path: { id }, query: { code } },
      });
      return data ?? problemOf(error, response.status);
    } catch {
      return problemOf(null);
    }
  }

  return { patient, record, studies, problem, loading, load, trend };
});
