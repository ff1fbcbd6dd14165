{{ config(meta={
    'activity_window_days': var('activity_window_days'),
    'due_window_days': var('due_window_days'),
    'overdue_expiry_days': var('overdue_expiry_days', none),
    'overdue_expiry_gap_multiple': var('overdue_expiry_gap_multiple'),
    'overdue_expiry_min_days': var('overdue_expiry_min_days'),
}) }}
-- One row per customer: a resolved person with at least one order up to the as-of date.
-- cohort_month = month of the first order; channel = first touch (int_customer_channel: the
-- first lead in any CRM, else the first file order). contact_count counts the CRM contacts
-- (amoCRM and Bitrix24) merged into the customer.
-- Customer 360 on top (definitions in _dim_customers.yml):
--   value      gross_margin, aov = revenue / orders_count;
--   activity   days_since_last_order, is_active / is_churned (int_customer_rfm);
--   repeat     median_gap_days, expected_next_order_date (amoCRM's own next date where it
--              applies, else the median gap), days_until_expected_order, overdue_expiry_days,
--              repurchase_status (int_customer_next_order); is_due / is_overdue = that status;
--   RFM        recency/frequency/monetary scores and rfm_segment (int_customer_rfm);
--   consent    int_customer_consent; a customer without CRM contacts is "unknown": not
--              withdrawn, not do-not-contact, no consent, contactable;
--   profile    birthday_month / birthday_day where a CRM contact records a birthday
--              (int_customer_birthday); the date of birth itself stays in the working
--              warehouse and never reaches BI (what birthday segments need is month and day).

with

orders as (

    select * from {{ ref('int_orders') }}

),

first_leads as (

    select * from {{ ref('int_customer_first_lead') }}

),

channels as (

    select * from {{ ref('int_customer_channel') }}

),

resolved as (

    select customer_id, count(*) as contact_count
    from {{ ref('int_customers__resolved') }}
    where node_source in ('amocrm', 'bitrix24')
    group by customer_id

),

rfm as (

    select * from {{ ref('int_customer_rfm') }}

),

next_orders as (

    select * from {{ ref('int_customer_next_order') }}

),

consent as (

    select * from {{ ref('int_customer_consent') }}

),

birthdays as (

    select * from {{ ref('int_customer_birthday') }}

),

order_summary as (

    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as orders_count,
        sum(amount) as revenue,
        sum(gross_margin) as gross_margin
    from orders
    group by customer_id

),

final as (

    select
        order_summary.customer_id,
        order_summary.first_order_date,
        {{ month_start('order_summary.first_order_date') }} as cohort_month,
        channels.channel,
        first_leads.first_lead_id,
        first_leads.first_lead_created_at,
        order_summary.orders_count,
        {{ money('order_summary.revenue') }} as revenue,
        order_summary.last_order_date,
        coalesce(resolved.contact_count, 0) as contact_count,

        ----------  value
        {{ money('order_summary.gross_margin') }} as gross_margin,
        {{ money(safe_divide('order_summary.revenue', 'order_summary.orders_count')) }} as aov,

        ----------  activity
        rfm.days_since_last_order,
        rfm.is_active,
        not rfm.is_active as is_churned,

        ----------  repeat sales
        next_orders.median_gap_days,
        next_orders.expected_gap_basis,
        next_orders.expected_next_order_date,
        next_orders.expected_next_order_basis,
        next_orders.expected_gap_days,
        next_orders.days_until_expected_order,
        next_orders.overdue_expiry_days,
        next_orders.repurchase_status,
        coalesce(next_orders.repurchase_status = 'due', false) as is_due,
        coalesce(next_orders.repurchase_status = 'overdue', false) as is_overdue,

        ----------  RFM
        rfm.recency_score,
        rfm.frequency_score,
        rfm.monetary_score,
        rfm.rfm_segment,

        ----------  consent
        coalesce(consent.has_marketing_consent, false) as has_marketing_consent,
        coalesce(consent.consent_withdrawn, false) as consent_withdrawn,
        coalesce(consent.do_not_contact, false) as do_not_contact,
        coalesce(consent.is_contactable, true) as is_contactable,

        ----------  profile
        cast(extract(month from birthdays.birthday) as integer) as birthday_month,
        cast(extract(day from birthdays.birthday) as integer) as birthday_day

    from order_summary
    left join first_leads
        on order_summary.customer_id = first_leads.customer_id
    left join channels
        on order_summary.customer_id = channels.customer_id
    left join resolved
        on order_summary.customer_id = resolved.customer_id
    left join rfm
        on order_summary.customer_id = rfm.customer_id
    left join next_orders
        on order_summary.customer_id = next_orders.customer_id
    left join consent
        on order_summary.customer_id = consent.customer_id
    left join birthdays
        on order_summary.customer_id = birthdays.customer_id

)

select * from final
