/**
 * Pages. /topics and /groups are also gateway API paths: the dashboard site (and Vite in
 * dev) serve the app for browser navigations there and proxy fetch/EventSource calls.
 */
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import OverviewView from './views/OverviewView.vue'

export const routes: RouteRecordRaw[] = [
  { path: '/', name: 'overview', component: OverviewView, meta: { title: 'Overview' } },
  { path: '/topics', name: 'topics', component: () => import('./views/TopicsView.vue'), meta: { title: 'Topics' } },
  {
    path: '/topics/:topic',
    name: 'topic',
    component: () => import('./views/TopicView.vue'),
    props: true,
    meta: { title: 'Topic' },
  },
  { path: '/groups', name: 'groups', component: () => import('./views/GroupsView.vue'), meta: { title: 'Groups' } },
  {
    path: '/groups/:topic/:group',
    name: 'group',
    component: () => import('./views/GroupView.vue'),
    props: true,
    meta: { title: 'Group' },
  },
  { path: '/clients', name: 'clients', component: () => import('./views/ClientsView.vue'), meta: { title: 'Clients' } },
  {
    path: '/dead-letters',
    name: 'dead-letters',
    component: () => import('./views/DeadLettersView.vue'),
    meta: { title: 'Dead letters' },
  },
  {
    path: '/:pathMatch(.*)*',
    name: 'not-found',
    component: () => import('./views/NotFoundView.vue'),
    meta: { title: 'Not found' },
  },
]

export const router = createRouter({
  history: createWebHistory(import.meta.env.BASE_URL),
  routes,
  linkActiveClass: 'active',
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
})

router.afterEach((to) => {
  const title = typeof to.meta.title === 'string' ? to.meta.title : ''
  const detail = typeof to.params.topic === 'string' ? ` · ${to.params.topic}` : ''
  document.title = title ? `${title}${detail} — spoolmq` : 'spoolmq'
})
