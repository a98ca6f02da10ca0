import { describe, expect, it } from 'vitest';
import { type ClinicalRecord, abnormalMark, shareable, timeline } from './record';

const p = { source: 'LIS^X', reference: 'M1', received_at: 1000 };
const lab = (id: number, order: number | null, time: number) => ({
  id, order, code: `C${id}`, name: `N${id}`, value: '1', numeric: 1, unit: '', range: '', low: null,
  high: null, flag: '', abnormal: '', status: 'F', specimen: '', observed_at: time, provenance: p,
});

describe('the record timeline', () => {
  it('groups lab results by order, newest first', () => {
    const r: ClinicalRecord = {
      patient: 1, merged_into: null, shared_only: false, encounters: [],
      orders: [{ id: 7, kind: 'lab', placer: 'P', filler: 'F', code: 'BMP', name: '生化', status: '', ordered_at: null, provider: '', provenance: p }],
      labs: [lab(1, 7, 5000), lab(2, 7, 5000), lab(3, null, 9000)],
      exam_reports: [], documents: [],
      diagnoses: [{ id: 1, code: 'I63.9', name: '脑梗死', system: 'I10', kind: 'A', time: 2000, provenance: p }],
    };
    const t = timeline(r);
    expect(t.map((e) => e.kind)).toEqual(['panel', 'panel', 'diagnosis']);
    const panel = t[1];
    if (panel?.kind !== 'panel') throw new Error('a panel second');
    expect(panel.item.name).toBe('生化');
    expect(panel.item.labs.length).toBe(2);
  });

  it('marks high red and low blue with an arrow', () => {
    expect(abnormalMark('H')).toEqual({ arrow: '↑', tone: 'high' });
    expect(abnormalMark('LL')).toEqual({ arrow: '↓↓', tone: 'low' });
    expect(abnormalMark('')).toEqual({ arrow: '', tone: '' });
  });
});

describe('what an application can share', () => {
  it('offers one item per analyte, then reports and diagnoses', () => {
    const glucose = (id: number, time: number, value: string, abnormal: string) => ({
      ...lab(id, null, time), code: 'GLU', name: '葡萄糖', value, unit: 'mmol/L', abnormal,
    });
    const r: ClinicalRecord = {
      patient: 1, merged_into: null, shared_only: false, encounters: [], orders: [],
      labs: [glucose(1, 1000, '6.2', ''), glucose(2, 3000, '9.6', 'H'), lab(3, null, 2000)],
      exam_reports: [{ id: 4, order: null, kind: 'radiology', code: 'CT', name: '头颅 CT', status: 'F', text: '', has_pdf: false, observed_at: 500, reported_at: 600, provenance: p }],
      documents: [],
      diagnoses: [{ id: 1, code: 'I63.9', name: '脑梗死', system: 'I10', kind: 'A', time: 2000, provenance: p }],
    };
    const items = shareable(r);
    expect(items.map((i) => i.key)).toEqual(['lab:GLU', 'lab:C3', 'exam_report:4', 'diagnosis:1']);
    expect(items[0]).toMatchObject({ title: '葡萄糖', detail: '2 × · 9.6 mmol/L', abnormal: 'H' });
    expect(items[3]?.title).toBe('I63.9 脑梗死');
  });
});
