// The programme view: Daejeon's 4IR vision as the city model holds it — strategies → tasks →
// sites (and industries, neighbourhoods) → partners — each site linking to its live page.

import { queryAll, type KvEntity } from './api';
import { el } from './dom';
import { pickLang, t, name } from './i18n';
import { SITE_KEYS, pointOf } from './model';
import type { CityStore } from './store';

const asList = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : []);

export class ProgrammeView {
  private entities: KvEntity[] | undefined;
  private loading: Promise<void> | undefined;
  onSite: (key: string) => void = () => {};
  onLocate: (at: [number, number]) => void = () => {};
  onInspect: (id: string) => void = () => {};

  constructor(
    private readonly root: HTMLElement,
    private readonly store: CityStore,
  ) {}

  async show(): Promise<void> {
    if (!this.entities) {
      this.root.replaceChildren(el('p', { class: 'muted' }, t('loading')));
      this.loading ??= queryAll({
        type: 'Strategy,Task,Industry,Partner,Neighbourhood',
        attrs: 'name,description,programmeCode,belongsToStrategy,implementsTask,participatesIn,organizationType',
      }).then((list) => {
        this.entities = list;
      });
      await this.loading;
    }
    this.render();
  }

  render(): void {
    const all = this.entities ?? [];
    const of = (type: string) => all.filter((e) => e.type === type).sort((a, b) => String(a.programmeCode ?? a.id).localeCompare(String(b.programmeCode ?? b.id)));
    const sites = this.store.byType('Site');
    const partnersOf = (id: string) => of('Partner').filter((p) => asList(p.participatesIn).includes(id));
    const chip = (e: KvEntity, cls: string) => {
      const b = el('button', { class: `chip ${cls}`, 'data-id': e.id }, pickLang(e.name, e.id));
      b.addEventListener('click', () => this.onInspect(e.id));
      return b;
    };
    const partnerRow = (id: string) => {
      const partners = partnersOf(id);
      return partners.length ? el('div', { class: 'prog-partners' }, el('span', { class: 'prog-label' }, t('partners')), ...partners.map((p) => chip(p, 'partner'))) : '';
    };
    const siteCard = (s: KvEntity) => {
      const key = s.id.replace('urn:ngsi-ld:Site:', '');
      const live = (SITE_KEYS as readonly string[]).includes(key);
      const action = el('button', { class: live ? 'go live' : 'go' }, live ? t('liveSite') : t('showOnMap'));
      action.addEventListener('click', () => {
        if (live) this.onSite(key);
        else {
          const at = pointOf(s);
          if (at) this.onLocate(at);
        }
      });
      return el(
        'li',
        { class: `prog-site ${String(s.siteCategory ?? '')}`, 'data-site': key },
        el('span', { class: 'site-name' }, pickLang(s.name, key)),
        el('span', { class: 'site-cat' }, s.siteCategory === 'testbed' ? t('testbed') : t('infrastructure')),
        action,
      );
    };
    const tree = el('ol', { class: 'prog-tree', 'aria-label': t('programme') });
    for (const strategy of of('Strategy')) {
      const tasks = of('Task').filter((task) => asList(task.belongsToStrategy).includes(strategy.id));
      const taskList = el('ol', { class: 'prog-tasks' });
      for (const task of tasks) {
        const taskSites = sites.filter((s) => asList(s.implementsTask).includes(task.id));
        const industries = of('Industry').filter((i) => asList(i.implementsTask).includes(task.id));
        const hoods = of('Neighbourhood').filter((n) => asList(n.implementsTask).includes(task.id));
        taskList.append(
          el(
            'li',
            { class: 'prog-task', 'data-id': task.id },
            el('div', { class: 'prog-head' }, el('span', { class: 'code' }, String(task.programmeCode ?? '')), pickLang(task.name, task.id)),
            industries.length ? el('div', { class: 'prog-row' }, el('span', { class: 'prog-label' }, t('industries')), ...industries.map((i) => chip(i, 'industry'))) : '',
            hoods.length ? el('div', { class: 'prog-row' }, el('span', { class: 'prog-label' }, t('neighbourhoods')), ...hoods.map((n) => chip(n, 'hood'))) : '',
            taskSites.length ? el('ul', { class: 'prog-sites' }, ...taskSites.map(siteCard)) : '',
            partnerRow(task.id),
          ),
        );
      }
      tree.append(
        el(
          'li',
          { class: 'prog-strategy', 'data-id': strategy.id },
          el('div', { class: 'prog-head strategy' }, el('span', { class: 'code' }, String(strategy.programmeCode ?? '')), pickLang(strategy.name, strategy.id)),
          strategy.description ? el('p', { class: 'lead' }, pickLang(strategy.description)) : '',
          partnerRow(strategy.id),
          taskList,
        ),
      );
    }
    this.root.replaceChildren(el('h2', { class: 'page-title' }, t('programme'), el('small', {}, ` · ${name('Strategy')} → ${name('Task')} → ${name('Site')}`)), tree);
  }
}
