-- One row per order up to the as-of date, numbered per customer. An order is
--   * a won lead: amoCRM status 142 (at closed_at, amount = price) or a Bitrix24 deal with
--     stage semantics 'S' (at CLOSEDATE, amount = OPPORTUNITY);
--   * an amoCRM buyer-funnel transaction (at completed_at, amount = price), owned by the main
--     contact of its amoCRM customer;
--   * a row of an orders file (order_date, amount), owned by the file order's own node.
-- The order date is the local date of the order time.
-- gross_margin = the source's own margin (orders files) where it has one, else
-- amount x var('margin_rate'); margin_known says whether it is a real margin (a source margin,
-- or a margin_rate other than 1). product_category = the file's product (CRM orders carry none).
-- currency = the file row's or the Bitrix24 deal's own currency, else the account currency
-- (var files_default_currency, default env VORONKA_CURRENCY, else RUB): amounts are added up
-- in marts, so fct_orders carries it and a mart check refuses more than one.
{%- set account_currency = (var("files_default_currency", env_var("VORONKA_CURRENCY", "")
                                 or "RUB") | upper | trim) %}
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

customers as (

    select * from {{ ref('int_customers__resolved') }}

),

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

b24_deals as (

    select account, 'bitrix24_deal_' || cast(deal_id as varchar) as lead_id, currency
    from {{ ref('stg_bitrix24__deals') }}

),

won_leads as (

    select
        leads.lead_id as order_id,
        case leads.crm when 'amocrm' then 'amocrm_lead' else 'bitrix24_deal' end
            as order_source,
        leads.lead_id,
        leads.account,
        leads.customer_id,
        -- a won lead always has closed_at; updated_at is a defensive fallback
        coalesce(leads.closed_at, leads.updated_at) as ordered_at,
        coalesce(leads.amount, 0) as amount,
        cast(null as numeric(18, 2)) as source_gross_margin,
        cast(null as varchar) as product_category,
        coalesce(b24_deals.currency, cast('{{ account_currency }}' as varchar)) as currency
    from leads
    left join b24_deals
        on leads.account = b24_deals.account
        and leads.lead_id = b24_deals.lead_id
    where leads.is_won

),

transactions as (

    select
        'amocrm_tx_' || cast(tx.transaction_id as varchar) as order_id,
        'amocrm_transaction' as order_source,
        cast(null as varchar) as lead_id,
        tx.account,
        coalesce(customers.customer_id,
                 'b_' || cast(tx.amocrm_customer_id as varchar)) as customer_id,
        tx.completed_at as ordered_at,
        coalesce(tx.amount, 0) as amount,
        cast(null as numeric(18, 2)) as source_gross_margin,
        cast(null as varchar) as product_category,
        cast('{{ account_currency }}' as varchar) as currency
    from {{ ref('stg_amocrm__transactions') }} as tx
    left join {{ ref('stg_amocrm__customers') }} as buyers
        on tx.account = buyers.account
        and tx.amocrm_customer_id = buyers.amocrm_customer_id
    left join customers
        on customers.node_id
            = {{ node_id('amocrm', 'buyers.account', 'buyers.main_contact_id') }}
    where not tx.is_deleted

),

file_orders as (

    select
        'files_' || file_orders.order_record_id as order_id,
        'files' as order_source,
        cast(null as varchar) as lead_id,
        file_orders.account,
        customers.customer_id,
        cast(file_orders.order_date as timestamp) as ordered_at,
        file_orders.amount,
        file_orders.gross_margin as source_gross_margin,
        file_orders.product as product_category,
        file_orders.currency
    from {{ ref('stg_files__orders') }} as file_orders
    inner join customers
        on customers.node_id
            = {{ node_id('files', 'file_orders.account', 'file_orders.order_record_id') }}

),

unioned as (

    select * from won_leads
    union all
    select * from transactions
    union all
    select * from file_orders

),

in_range as (

    select
        unioned.*,
        cast(unioned.ordered_at as date) as order_date
    from unioned
    cross join as_of
    where cast(unioned.ordered_at as date) <= as_of.as_of_date

),

numbered as (

    select
        order_id,
        order_source,
        lead_id,
        account,
        customer_id,
        ordered_at,
        order_date,
        {{ month_start('order_date') }} as order_month,
        cast(amount as numeric(18, 2)) as amount,
        {{ money('coalesce(source_gross_margin, amount * ' ~ var('margin_rate') ~ ')') }}
            as gross_margin,
        (source_gross_margin is not null or {{ var('margin_rate') }} <> 1) as margin_known,
        -- the order's own gross margin (the source's), not amount x margin_rate
        source_gross_margin is not null as has_source_margin,
        product_category,
        currency,
        row_number() over (
            partition by customer_id order by ordered_at, order_id
        ) as order_number
    from in_range

)

select * from numbered
